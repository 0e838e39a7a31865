"""A worker killed with SIGKILL mid-job: another worker resumes the job from its checkpoint.

Real processes on a real SQLite file (subprocesses cannot see the test database), driven the
way an operator would: migrate, create a job, start `manage.py worker`, kill it, start another.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT

CREATE_JOB = """
from training import jobs
from training.models import LanguageModel
model = LanguageModel.objects.create(name="tiny", is_student=True, source={source!r})
records = [{{"messages": [{{"role": "user", "content": f"What is {{i}}+{{i}}?"}},
                          {{"role": "assistant", "content": f"{{i}}+{{i}} = {{2 * i}}"}}]}}
           for i in range(16)]
dataset = jobs.dataset_create(name="sums", method="sft", records=records)
job = jobs.training_job_create(base_model=model, dataset=dataset, max_steps=300, batch_size=4,
                               learning_rate=1e-3, lora_r=4, checkpoint_every=5, warmup_ratio=0.0)
print(job.pk)
"""


@pytest.fixture
def site(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "TEACHLOOP_TASKS_BACKEND")
    }
    env.update(
        {
            "TEACHLOOP_DATA_DIR": str(tmp_path),
            "HF_HUB_OFFLINE": "1",
            "TEACHLOOP_JOB_HEARTBEAT_S": "0.5",
            "TEACHLOOP_JOB_STALE_AFTER_S": "3",
            "TEACHLOOP_RECOVER_EVERY_S": "0.5",
            "OMP_NUM_THREADS": "1",
        }
    )

    def manage(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            **kwargs,
        )

    def worker(log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--interval", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    assert manage("migrate", "-v0").returncode == 0
    return manage, worker, tmp_path / "teachloop.sqlite3"


def job_row(db: Path, job_id: int) -> dict:
    with sqlite3.connect(db, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT status, step, attempts, events FROM training_trainingjob WHERE id = ?", (job_id,)
        ).fetchone()
        return dict(row)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_it_resumes_a_job_after_its_worker_is_killed(site, tiny_model_dir, tmp_path):
    manage, start_worker, db = site
    created = manage("shell", "-c", CREATE_JOB.format(source=str(tiny_model_dir)))
    assert created.returncode == 0, created.stderr
    job_id = int(created.stdout.strip().splitlines()[-1])

    first = start_worker(tmp_path / "worker1.log")
    try:
        wait_for(lambda: job_row(db, job_id)["step"] >= 12, 180, "the first worker to pass a checkpoint")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    killed_at = job_row(db, job_id)
    assert killed_at["status"] == "running"  # the dead worker left it claimed

    second = start_worker(tmp_path / "worker2.log")
    try:
        done = wait_for(
            lambda: (row := job_row(db, job_id))["status"] in ("succeeded", "failed") and row,
            240,
            "the second worker to finish the job",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)

    log = (tmp_path / "worker2.log").read_text()
    assert done["status"] == "succeeded", log[-3000:]
    assert done["step"] == 300 and done["attempts"] == 2
    messages = [event["message"] for event in json.loads(done["events"])]
    assert any("stopped responding" in m and "re-queued" in m for m in messages), messages
    resumed = [m for m in messages if m.startswith("resumed from the checkpoint at step")]
    assert resumed, messages
    resumed_step = int(resumed[0].rsplit(" ", 1)[1])
    assert 10 <= resumed_step <= killed_at["step"]  # from the last checkpoint, not from step 0

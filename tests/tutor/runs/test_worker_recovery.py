"""A worker killed with SIGKILL in the middle of a teaching run: another worker resumes the run from
its last finished step. Real processes on a real SQLite file, as in
tests/training/test_worker_recovery.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.training.test_worker_recovery import wait_for

CREATE_RUN = """
from tests.tutor.core.runs.fakes import mini_course
from training.models import LanguageModel
from tutor.courses import services
from tutor.runs import services as teaching
tiny = LanguageModel.objects.create(name="tiny", is_student=True, is_teacher=True, source={source!r})
course = services.course_save(course=mini_course(train=4, probe=4, exam=4))
run = teaching.teaching_run_create(course=course, student=tiny, teacher=tiny, train={{"disabled": True}},
                                   enqueue=True, rounds=4, plan_budget=8, explain_budget=4, generate_budget=2)
print(run.pk)
"""


def run_row(db: Path, run_id: int) -> dict:
    with sqlite3.connect(db, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT status, attempts, current_round, last_error FROM tutor_teachingrun WHERE id = ?",
            (run_id,),
        ).fetchone()
        rounds = conn.execute(
            'SELECT "index", done_steps FROM tutor_round WHERE run_id = ? ORDER BY "index"', (run_id,)
        ).fetchall()
        return {
            **dict(row),
            "rounds": [{"round": r["index"], "done_steps": json.loads(r["done_steps"])} for r in rounds],
        }


@pytest.mark.slow
def test_it_resumes_a_run_after_its_worker_is_killed(tiny_model_dir, tmp_path):
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

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
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
    created = manage("shell", "-c", CREATE_RUN.format(source=str(tiny_model_dir)))
    assert created.returncode == 0, created.stderr
    run_id = int(created.stdout.strip().splitlines()[-1])
    db = tmp_path / "teachloop.sqlite3"
    state = tmp_path / "runs" / str(run_id) / "state.json"

    first = worker(tmp_path / "worker1.log")
    try:
        wait_for(
            lambda: any("reexamine" in r["done_steps"] for r in run_row(db, run_id)["rounds"]),
            240,
            "the first worker to finish a round",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    killed = run_row(db, run_id)
    assert killed["status"] == "running", (tmp_path / "worker1.log").read_text()[-3000:]
    saved = json.loads(state.read_text())
    first_round = saved["rounds"][0]["explanations"]

    second = worker(tmp_path / "worker2.log")
    try:
        done = wait_for(
            lambda: (row := run_row(db, run_id))["status"] in ("succeeded", "failed") and row,
            300,
            "the second worker to finish the run",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    assert done["status"] == "succeeded", (tmp_path / "worker2.log").read_text()[-3000:]
    assert done["attempts"] == 2
    assert [r["round"] for r in done["rounds"]] == [0, 1, 2, 3]
    # The finished round was not done again: its explanations are the ones written before the kill.
    assert json.loads(state.read_text())["rounds"][0]["explanations"] == first_round

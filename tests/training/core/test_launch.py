"""Training under ``accelerate launch``: two CPU processes (gloo DDP) on the tiny model.

accelerate's ``--cpu`` starts a single process (its multi-CPU path is mpirun), so these runs take the
same torchrun path as multi-GPU; each rank imports torch/transformers/TRL, so a run costs ~15-25 s on
two cores. Every test that launches is guarded by a deadline: a hang fails the test, it does not stall
the suite. Runs near or over 30 s (two launches, or a parent process too) are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from training.core.config import TrainConfig
from training.core.launch import (
    EVENTS_FILENAME,
    LAUNCH_DIRNAME,
    _collect,
    _EventTail,
    launch_command,
    num_gpus,
    run_distributed,
)
from training.core.trainer import ProgressEvent, TrainResult, train

DEADLINE_S = 240.0

# Launch tests start real processes; on a GPU host the tiny model would train on the GPUs instead.
needs_cpu = pytest.mark.skipif(num_gpus() > 0, reason="these runs are written for CPU (gloo) processes")


def chat_records(n: int = 8) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i}+{i}?"},
                {"role": "assistant", "content": f"The answer is {2 * i}."},
            ]
        }
        for i in range(n)
    ]


def quick(base: Path, **overrides) -> TrainConfig:
    settings = {
        "base_model": str(base),
        "max_steps": 4,
        "batch_size": 2,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "checkpoint_every": 100,
        "lora_r": 8,
        "lora_alpha": 16,
    }
    return TrainConfig(**{**settings, **overrides})


class Deadline:
    """``should_stop`` that fails the run (run_distributed kills the processes) past a deadline,
    optionally asking for a stop once ``stop_after`` events came in."""

    def __init__(self, events: list | None = None, stop_after: int | None = None) -> None:
        self.until = time.monotonic() + DEADLINE_S
        self.events, self.stop_after = events, stop_after

    def __call__(self) -> bool:
        if time.monotonic() > self.until:
            raise TimeoutError(f"the distributed run took more than {DEADLINE_S} s")
        return self.stop_after is not None and len(self.events) >= self.stop_after


def training_pids(output_dir: Path, rank: str | None = None) -> list[int]:
    """Processes (launcher and ranks) running for ``output_dir``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"training.core.launch" not in cmdline or str(output_dir).encode() not in cmdline:
                continue
            if rank is not None:
                environ = dict(
                    item.split(b"=", 1)
                    for item in (entry / "environ").read_bytes().split(b"\0")
                    if b"=" in item
                )
                if b"worker" not in cmdline or environ.get(b"RANK") != rank.encode():
                    continue
        except OSError:  # gone, or not ours to read
            continue
        found.append(int(entry.name))
    return found


def wait_until_gone(output_dir: Path, timeout_s: float = 60.0) -> list[int]:
    until = time.monotonic() + timeout_s
    while (left := training_pids(output_dir)) and time.monotonic() < until:
        time.sleep(0.5)
    return left


# --- without launching ------------------------------------------------------------------


def test_it_reads_only_complete_event_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = _EventTail(path)
    assert tail.read() == []  # not written yet
    path.write_text('{"step": 1}\n{"step": 2')
    assert tail.read() == [{"step": 1}]
    with open(path, "a") as out:
        out.write('}\n{"step": 3}\n')
    assert tail.read() == [{"step": 2}, {"step": 3}]
    assert tail.read() == []


def test_it_launches_several_processes_through_torchrun_on_cpu_too(tmp_path):
    command = launch_command(tmp_path, num_processes=2, cuda=False, port=29555)
    assert command[1:4] == ["-m", "training.core.launch", "accelerate"]
    assert "--multi_gpu" in command and "--cpu" not in command  # --cpu would start one process
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[command.index("--main_process_port") + 1] == "29555"
    assert command[-5:] == ["-m", "training.core.launch", "worker", "--dir", str(tmp_path.resolve())]

    single = launch_command(tmp_path, num_processes=1, cuda=True, port=29555, extra_launch_args=["--debug"])
    assert "--multi_gpu" not in single and "--cpu" not in single and "--main_process_port" not in single
    assert single[single.index("--debug") + 1] == "-m"  # extra arguments go before the module


def test_it_names_the_first_rank_that_failed(tmp_path):
    folder = tmp_path / LAUNCH_DIRNAME
    folder.mkdir()
    (folder / "error-1.txt").write_text("RuntimeError: rank 1 broke\n")
    time.sleep(0.01)
    (folder / "error-0.txt").write_text("KeyboardInterrupt: stopped by torchrun\n")
    result = _collect(folder, 1, TrainResult)
    assert result.status == "failed" and result.adapter_dir is None
    assert "rank 1: RuntimeError: rank 1 broke" in result.reason and "exit code 1" in result.reason


def test_it_falls_back_to_the_launchers_stderr(tmp_path):
    folder = tmp_path / LAUNCH_DIRNAME
    folder.mkdir()
    (folder / "stderr.log").write_text("noise\n" * 50 + "traceback : Signal 9 (SIGKILL) received by PID 7\n")
    result = _collect(folder, -9, TrainResult)
    assert result.status == "failed"
    assert "killed by SIGKILL" in result.reason and "Signal 9 (SIGKILL) received" in result.reason
    assert result.reason.count("noise") <= 12  # the last lines, not the whole log


ROOT_CAUSE = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
Root Cause (first observed failure):
[0]:
  time      : 2026-11-23_07:24:02
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================
"""


def test_it_names_a_rank_killed_by_a_signal_from_torchruns_summary(tmp_path):
    folder = tmp_path / LAUNCH_DIRNAME
    folder.mkdir()
    (folder / "stderr.log").write_text(ROOT_CAUSE)
    # Rank 0 broke on the lost peer before torchrun stopped it: both facts are kept.
    (folder / "error-0.txt").write_text("RuntimeError: Connection closed by peer\n")
    result = _collect(folder, 1, TrainResult)
    assert result.reason == (
        "training processes ended without a result (exit code 1): rank 0: RuntimeError: "
        "Connection closed by peer; first failure: rank 1 (local_rank: 1), exitcode -9 "
        "(pid: 4242), traceback Signal 9 (SIGKILL) received by PID 4242"
    )


# --- two CPU processes --------------------------------------------------------------------


@needs_cpu
def test_it_trains_in_two_processes_and_relays_progress(tiny_model_dir, tmp_path):
    events: list[ProgressEvent] = []
    result = run_distributed(
        quick(tiny_model_dir),
        chat_records(),
        tmp_path,
        num_processes=2,
        progress=events.append,
        should_stop=Deadline(),
    )
    assert result.status == "succeeded", result.reason
    assert [e.step for e in events] == [1, 2, 3, 4] and events[-1].total_steps == 4
    assert all(isinstance(e, ProgressEvent) and e.loss > 0 for e in events)
    # Rank 0 alone reports: one line per step.
    assert len((tmp_path / LAUNCH_DIRNAME / EVENTS_FILENAME).read_text().splitlines()) == 4
    # Two ranks split the data: 8 records at 2 per process and step are 2 steps an epoch.
    assert result.metrics["steps"] == 4 and result.metrics["epochs"] == 2.0
    assert {p.name for p in result.last_checkpoint.glob("rng_state_*.pth")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }
    # One adapter folder, complete, written by rank 0 alone (two writers would race on the rename).
    adapter = result.adapter_dir
    assert adapter == tmp_path / "adapter" and not (tmp_path / "adapter.partial").exists()
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "metrics.json",
        "teachloop_train_config.json",
    } <= {p.name for p in adapter.iterdir()}
    assert json.loads((adapter / "metrics.json").read_text())["status"] == "succeeded"
    assert "Traceback" not in (tmp_path / LAUNCH_DIRNAME / "stderr.log").read_text()
    assert wait_until_gone(tmp_path) == []


@needs_cpu
@pytest.mark.slow
def test_two_processes_count_every_records_tokens_when_their_batches_share_a_prefix(tiny_model_dir, tmp_path):
    system = {"role": "system", "content": "You are a patient tutor. Answer with the number, then stop."}
    records = [{"messages": [system, *r["messages"]]} for r in chat_records()]
    two = run_distributed(
        quick(tiny_model_dir), records, tmp_path / "two", num_processes=2, should_stop=Deadline()
    )
    assert two.status == "succeeded", two.reason
    alone = train(quick(tiny_model_dir, batch_size=4), records, tmp_path / "one")
    assert alone.status == "succeeded", alone.reason
    # Every record twice either way (4 steps of 4 records): the same tokens, each process's shared
    # prefixes counted for every record they stand for.
    assert two.metrics["tokens"] == alone.metrics["tokens"] > 0


@needs_cpu
@pytest.mark.slow
def test_it_stops_every_rank_at_the_same_step_and_resumes(tiny_model_dir, tmp_path):
    config = quick(tiny_model_dir, max_steps=400)
    events: list[ProgressEvent] = []
    result = run_distributed(
        config,
        chat_records(),
        tmp_path,
        num_processes=2,
        progress=events.append,
        should_stop=Deadline(events, stop_after=2),
    )
    assert result.status == "cancelled", result.reason
    stopped_at = events[-1].step
    assert stopped_at < 400 and result.reason == f"cancelled at step {stopped_at} of 400"
    # The stop path kept this step's checkpoint (both ranks' RNG state) and wrote the adapter.
    assert result.last_checkpoint == tmp_path / "checkpoints" / f"checkpoint-{stopped_at}"
    assert (result.last_checkpoint / "rng_state_1.pth").is_file()
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()

    resumed: list[ProgressEvent] = []
    again = run_distributed(
        config,
        chat_records(),
        tmp_path,
        num_processes=2,
        progress=resumed.append,
        should_stop=Deadline(resumed, stop_after=2),
    )
    assert again.status == "cancelled", again.reason
    assert resumed[0].step == stopped_at + 1
    assert again.metrics["resumed_from_step"] == stopped_at


@needs_cpu
def test_it_cancels_before_training_when_stopped_at_once(tiny_model_dir, tmp_path):
    result = run_distributed(
        quick(tiny_model_dir), chat_records(), tmp_path, num_processes=2, should_stop=lambda: True
    )
    assert result.status == "cancelled" and result.reason == "cancelled before training started"
    assert result.adapter_dir is None and not (tmp_path / "checkpoints").exists()


@needs_cpu
def test_it_fails_with_the_engines_error_when_the_base_model_is_missing(tmp_path):
    result = run_distributed(
        quick(tmp_path / "no-such-model"),
        chat_records(),
        tmp_path / "out",
        num_processes=2,
        should_stop=Deadline(),
    )
    assert result.status == "failed" and result.adapter_dir is None
    assert "ended without a result" in result.reason and "no-such-model" in result.reason
    assert result.reason.split(": ", 1)[1].startswith("rank ")


@needs_cpu
def test_it_fails_with_a_reason_when_a_rank_is_killed(tiny_model_dir, tmp_path):
    killed: list[int] = []

    def kill_rank_1(event: ProgressEvent) -> None:
        if not killed:
            pids = training_pids(tmp_path, rank="1")
            assert len(pids) == 1, pids
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    result = run_distributed(
        quick(tiny_model_dir, max_steps=100_000),
        chat_records(),
        tmp_path,
        num_processes=2,
        progress=kill_rank_1,
        should_stop=Deadline(),
    )
    assert killed and result.status == "failed" and result.adapter_dir is None
    assert "ended without a result" in result.reason and "SIGKILL" in result.reason, result.reason
    assert wait_until_gone(tmp_path) == []  # torchrun took rank 0 down too


@needs_cpu
def test_it_kills_the_processes_when_the_caller_fails(tiny_model_dir, tmp_path):
    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("the progress callback broke")

    with pytest.raises(RuntimeError, match="progress callback broke"):
        run_distributed(
            quick(tiny_model_dir, max_steps=100_000),
            chat_records(),
            tmp_path,
            num_processes=2,
            progress=broken,
            should_stop=Deadline(),
        )
    assert wait_until_gone(tmp_path) == []


@needs_cpu
@pytest.mark.slow
def test_the_processes_die_with_a_killed_parent(tiny_model_dir, tmp_path):
    script = textwrap.dedent(f"""
        from pathlib import Path
        from training.core.config import TrainConfig
        from training.core.launch import run_distributed
        config = TrainConfig.from_dict({quick(tiny_model_dir, max_steps=100_000).to_dict()!r})
        run_distributed(config, {chat_records()!r}, Path({str(tmp_path)!r}), num_processes=2)
    """)
    repo = Path(__file__).resolve().parents[3]
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}
    )
    try:
        events = tmp_path / LAUNCH_DIRNAME / EVENTS_FILENAME
        until = time.monotonic() + DEADLINE_S
        while not (events.is_file() and events.read_text()) and time.monotonic() < until:
            assert parent.poll() is None, "the parent ended early"
            time.sleep(0.5)
        assert events.read_text(), "training never started"
        assert len(training_pids(tmp_path)) >= 3  # the launcher and two ranks
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        assert wait_until_gone(tmp_path) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in training_pids(tmp_path):  # only if the test failed: don't leave them running
            os.kill(pid, signal.SIGKILL)

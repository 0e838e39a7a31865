"""Running ``train()`` on several GPUs (or CPU processes) under ``accelerate launch`` (DDP).

``run_distributed`` is a drop-in for ``train()`` that a worker calls when a job should use all the
GPUs of its host. Rules that matter:

- everything the rank processes need is a file under ``output_dir/launch/``: ``teachloop_train_config.json``,
  ``records.jsonl``, ``accelerate.json`` (our own accelerate config, so a ``default_config.yaml`` left in
  ``~/.cache/huggingface/accelerate`` by ``accelerate config`` cannot switch a job to DeepSpeed or FSDP).
  The same folder on a shared filesystem is what a multi-node launch runs from (docs/multi-gpu.md);
- rank 0 appends each ``ProgressEvent`` to ``events.jsonl`` and writes the final ``TrainResult`` to
  ``result.json``; the parent tails the events into ``progress`` every ``poll_s`` seconds;
- a cancel is the file ``STOP``: rank 0 reads it after every optimizer step and every rank takes part
  in one all-reduce of the flag per step (over a gloo group of its own), so all ranks stop at the same
  step, save the same checkpoint and none waits forever in a collective the others left;
- the processes ending without ``result.json`` (a crash, the OOM killer) is a failed result whose reason
  is the failing rank's error, or the last lines of the launcher's stderr (``stderr.log``);
- the launcher runs in its own session. If the parent fails or is interrupted it kills that process
  group; if the parent dies outright (SIGKILL), the launcher and every rank get SIGTERM from the kernel
  (Linux ``PR_SET_PDEATHSIG``), so no orphan keeps a GPU or writes into a folder a retry is using;
- resuming works as with ``train()``: checkpoints stay in ``output_dir/checkpoints``.

On CPU (tests, or a host without GPUs) several processes train with gloo: accelerate's ``--cpu`` would
start one process only (its multi-CPU path is mpirun), so CPU runs go through the same torchrun path
(``--multi_gpu``) and the Trainer, told ``use_cpu``, picks gloo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.core.config import TrainConfig

if TYPE_CHECKING:
    from training.core.trainer import ProgressEvent, TrainResult

REPO_ROOT = Path(__file__).resolve().parents[2]  # where ``import training`` works
LAUNCH_DIRNAME = "launch"
RECORDS_FILENAME = "records.jsonl"
EVENTS_FILENAME = "events.jsonl"
RESULT_FILENAME = "result.json"
STOP_FILENAME = "STOP"
ACCELERATE_CONFIG_FILENAME = "accelerate.json"
KILL_GRACE_S = 30.0  # torchrun's agent itself gives its workers 30 s between SIGTERM and SIGKILL


def num_gpus() -> int:
    """CUDA devices this process may use (``CUDA_VISIBLE_DEVICES`` applies); 0 without CUDA."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# --- the parent: write the folder, launch, relay, collect ------------------------------------


def prepare_launch_dir(
    config: TrainConfig,
    records: list[dict[str, Any]],
    output_dir: Path,
    *,
    num_processes: int,
    num_machines: int = 1,
) -> Path:
    """Write what the rank processes read into ``output_dir/launch`` (removing an earlier run's
    events, result and STOP) and return that folder."""
    folder = Path(output_dir) / LAUNCH_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    for name in (EVENTS_FILENAME, RESULT_FILENAME, STOP_FILENAME):
        (folder / name).unlink(missing_ok=True)
    for stale in folder.glob("error-*.txt"):
        stale.unlink()
    config.save(folder)
    with open(folder / RECORDS_FILENAME, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    multi = num_processes > 1 or num_machines > 1
    (folder / ACCELERATE_CONFIG_FILENAME).write_text(
        json.dumps(
            {
                "compute_environment": "LOCAL_MACHINE",
                "distributed_type": "MULTI_GPU" if multi else "NO",
                "num_processes": num_processes,
                "num_machines": num_machines,
                "machine_rank": 0,
                "mixed_precision": "no",  # the Trainer sets bf16 itself where the GPU has it
                "use_cpu": False,
                "debug": False,
                "gpu_ids": "all",
                "rdzv_backend": "static",
                "main_training_function": "main",
                "downcast_bf16": False,
                "dynamo_config": {},
            },
            indent=2,
        )
        + "\n"
    )
    return folder


def launch_command(
    output_dir: Path, *, num_processes: int, cuda: bool, port: int, extra_launch_args: Sequence[str] = ()
) -> list[str]:
    """The ``accelerate launch`` command line (run through our PDEATHSIG shim, see ``_launcher``)."""
    folder = Path(output_dir) / LAUNCH_DIRNAME
    args = [
        sys.executable,
        "-m",
        "training.core.launch",
        "accelerate",
        "--config_file",
        str(folder / ACCELERATE_CONFIG_FILENAME),
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if num_processes > 1:
        # torchrun's path: N processes with RANK/LOCAL_RANK set. On CPU too (see the module docstring).
        args += ["--multi_gpu", "--main_process_port", str(port)]
    elif not cuda:
        args += ["--cpu"]
    args += list(extra_launch_args)
    args += ["-m", "training.core.launch", "worker", "--dir", str(Path(output_dir).resolve())]
    return args


def run_distributed(
    config: TrainConfig,
    records: list[dict[str, Any]],
    output_dir: Path,
    *,
    num_processes: int,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    poll_s: float = 0.5,
    extra_launch_args: Sequence[str] = (),
) -> TrainResult:
    """``train()`` in ``num_processes`` DDP processes (one per GPU); same result and callbacks.

    ``progress`` and ``should_stop`` are called in this process, between polls; an exception from
    them (or a KeyboardInterrupt) kills the training processes and propagates.
    """
    from training.core.trainer import ProgressEvent, TrainResult

    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, not {num_processes}")
    gpus = num_gpus()
    if gpus and num_processes > gpus:
        raise ValueError(f"num_processes={num_processes} but only {gpus} GPUs are visible")
    output_dir = Path(output_dir).resolve()
    if not resume:  # here, not in every rank: ranks deleting one shared folder at once would race
        shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    folder = prepare_launch_dir(config, records, output_dir, num_processes=num_processes)
    command = launch_command(
        output_dir,
        num_processes=num_processes,
        cuda=gpus > 0,
        port=_free_port(),
        extra_launch_args=extra_launch_args,
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
        "TEACHLOOP_LAUNCH_PARENT_PID": str(os.getpid()),
    }
    events = _EventTail(folder / EVENTS_FILENAME)
    stop_file = folder / STOP_FILENAME
    if should_stop is not None and should_stop():
        stop_file.touch()  # the ranks then end "cancelled before training started", as train() does
    with open(folder / "stdout.log", "wb") as stdout, open(folder / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            while True:
                exited = process.poll() is not None
                for data in events.read():
                    if progress is not None:
                        progress(ProgressEvent(**data))
                if exited:
                    break
                # Asked at every poll, even after a STOP: a caller's deadline can still end a stuck run.
                if should_stop is not None and should_stop() and not stop_file.exists():
                    stop_file.touch()
                time.sleep(poll_s)
        except BaseException:
            _kill_group(process)
            raise
    return _collect(folder, process.returncode, TrainResult)


def _collect(folder: Path, returncode: int, result_type) -> TrainResult:
    """The result rank 0 wrote, or a failed result saying why there is none."""
    result_file = folder / RESULT_FILENAME
    if result_file.is_file():
        data = json.loads(result_file.read_text())
        return result_type(
            status=data["status"],
            reason=data["reason"],
            adapter_dir=Path(data["adapter_dir"]) if data["adapter_dir"] else None,
            metrics=data["metrics"],
            last_checkpoint=Path(data["last_checkpoint"]) if data["last_checkpoint"] else None,
        )
    # A rank that raised wrote error-<rank>.txt; the first one is the cause, the others broke on it. A rank
    # killed by a signal (the OOM killer) writes nothing: torchrun's "Root Cause" summary names it.
    errors = sorted(
        folder.glob("error-*.txt"), key=lambda path: (path.stat().st_mtime_ns, int(path.stem.split("-")[1]))
    )
    stderr = folder / "stderr.log"
    details = [f"rank {errors[0].stem.split('-')[1]}: {errors[0].read_text().strip()}"] if errors else []
    root = _root_cause(stderr)
    if root and (not errors or "Signal" in root):
        details.append(f"first failure: {root}")
    detail = "; ".join(details) or _tail(stderr) or "no output"
    reason = f"training processes ended without a result ({_how(returncode)}): {detail}"
    checkpoints = folder.parent / "checkpoints"
    from training.core.trainer import _latest_checkpoint

    return result_type("failed", reason, None, {"status": "failed"}, _latest_checkpoint(checkpoints))


def _how(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _root_cause(stderr: Path) -> str | None:
    """The failed rank in torchrun's summary ("Root Cause (first observed failure): ... rank : 1 ...")."""
    try:
        _, found, after = stderr.read_text(errors="replace").rpartition("Root Cause")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in after.splitlines() if found else []:
        key, sep, value = line.strip().partition(":")
        if sep and key.strip() in ("rank", "exitcode", "traceback"):
            fields.setdefault(key.strip(), " ".join(value.split()))
    return ", ".join(f"{key} {value}" for key, value in fields.items()) or None


def _tail(path: Path, lines: int = 12, chars: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-chars:]


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the launcher's process group (torchrun passes it on to its ranks), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


class _EventTail:
    """New complete JSON lines of a file another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1  # a line being written is read next time
        self.offset += end
        return [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]


# --- the rank processes --------------------------------------------------------------------


class _StopFlag:
    """``should_stop`` for every rank: rank 0 looks for the STOP file (or its launching parent gone);
    one all-reduce per call makes every rank return the same answer at the same step."""

    def __init__(self, stop_file: Path, rank: int, world_size: int) -> None:
        self.stop_file, self.rank, self.world_size = stop_file, rank, world_size
        self.group = None
        self.stopped = False
        parent = os.environ.get("TEACHLOOP_LAUNCH_PARENT_PID")
        self.parent_pid = int(parent) if parent and parent.isdigit() else None

    def start(self) -> None:
        """Join the process group early (train() asks before it creates its Trainer) and make a gloo
        group for the flag: a CPU tensor, whatever backend the gradients use."""
        if self.world_size == 1:
            return
        import torch
        import torch.distributed as dist
        from accelerate import PartialState

        # The same backend and device setup the Trainer would choose; it reuses this process group.
        PartialState(cpu=not torch.cuda.is_available())
        self.group = dist.new_group(backend="gloo")

    def __call__(self) -> bool:
        local = self.rank == 0 and (self.stop_file.exists() or self._parent_gone())
        if self.group is not None:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([int(local or self.stopped)], dtype=torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
            local = bool(flag.item())
        self.stopped = self.stopped or local
        return self.stopped

    def _parent_gone(self) -> bool:
        if self.parent_pid is None:
            return False
        try:
            os.kill(self.parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class _EventWriter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: ProgressEvent) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(event)) + "\n")


def _worker(output_dir: Path) -> int:
    """One rank: train from ``output_dir/launch``; rank 0 reports. Exit 1 on a failed result, so that
    torchrun stops ranks that may still wait on this one."""
    _die_with_parent()
    folder = output_dir / LAUNCH_DIRNAME
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        from training.core.trainer import train

        config = TrainConfig.load(folder)
        with open(folder / RECORDS_FILENAME, encoding="utf-8") as lines:
            records = [json.loads(line) for line in lines if line.strip()]
        should_stop = _StopFlag(folder / STOP_FILENAME, rank, world_size)
        should_stop.start()
        progress = _EventWriter(folder / EVENTS_FILENAME) if rank == 0 else None
        result = train(config, records, output_dir, progress=progress, should_stop=should_stop, resume=True)
    except BaseException as exc:
        (folder / f"error-{rank}.txt").write_text(f"{type(exc).__name__}: {exc}\n")
        raise
    if rank == 0:
        data = {
            "status": result.status,
            "reason": result.reason,
            "adapter_dir": str(result.adapter_dir) if result.adapter_dir else None,
            "metrics": result.metrics,
            "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        }
        partial = folder / (RESULT_FILENAME + ".partial")
        partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
        partial.replace(folder / RESULT_FILENAME)
    elif result.status == "failed":
        (folder / f"error-{rank}.txt").write_text(result.reason + "\n")
    if result.status == "failed":
        return 1
    _leave_process_group()
    return 0


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent process dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _launcher(accelerate_args: list[str]) -> int:
    """``accelerate launch`` in this process, after asking to die with our parent: the parent is the
    worker that called run_distributed, so its death (even SIGKILL) ends the launch."""
    _die_with_parent()
    parent = os.environ.get("TEACHLOOP_LAUNCH_PARENT_PID")
    if parent and parent.isdigit() and os.getppid() != int(parent):
        return 1  # the parent died before prctl took effect
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser

    try:
        accelerate_launch(launch_command_parser().parse_args(accelerate_args))
    except subprocess.CalledProcessError as exc:  # one process, no torchrun: say how it ended, not where
        print(f"training process ended: {_how(exc.returncode)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["accelerate"]:  # everything after it is accelerate launch's own command line
        return _launcher(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m training.core.launch",
        description="Run or prepare a distributed TeachLoop training run.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="one rank (run by accelerate launch on every node)")
    worker.add_argument(
        "--dir", required=True, type=Path, help="the job's output folder (shared by all nodes)"
    )
    prepare = commands.add_parser(
        "prepare", help="write DIR/launch from a config and records, for a manual launch"
    )
    prepare.add_argument("--dir", required=True, type=Path)
    prepare.add_argument("--config", required=True, type=Path, help="a teachloop_train_config.json")
    prepare.add_argument("--records", required=True, type=Path, help="training records, JSONL")
    prepare.add_argument("--num-processes", type=int, required=True, help="processes on all nodes together")
    prepare.add_argument("--num-machines", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "worker":
        return _worker(args.dir.resolve())
    config = TrainConfig.from_dict(json.loads(args.config.read_text()))
    with open(args.records, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    print(
        prepare_launch_dir(
            config,
            records,
            args.dir.resolve(),
            num_processes=args.num_processes,
            num_machines=args.num_machines,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

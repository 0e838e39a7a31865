"""Run a command on GPUs that no other container on this host holds.

Why: Docker gives every container that reserves ``count: 1`` GPU the *first* GPU (device 0),
so ``docker compose up --scale worker-gpu=4`` with such a reservation would put four workers
on one GPU (docker/compose#11863). The GPU worker service therefore sees every GPU of its host
and each container claims ``TEACHLOOP_WORKER_GPUS`` of them here, with one lock file per GPU in
a volume that the containers of one host share. The command is exec'ed holding the locks, so a
container that stops or dies frees its GPUs, and a replica started when all are taken waits.

    python docker/claim_gpus.py -- python manage.py worker --queues training

Environment:
  TEACHLOOP_WORKER_GPUS   GPUs per worker: a number (default 1), or ``all`` to take no lock and
                          see every GPU (one worker per host; jobs run under accelerate launch).
  TEACHLOOP_GPU_IDS       GPUs workers may claim, e.g. ``1,2,3`` when a vLLM teacher holds GPU 0;
                          default: every GPU this container sees (``torch.cuda.device_count()``).
  TEACHLOOP_GPU_LOCK_DIR  where the lock files live (default /gpu-locks): a volume local to the
                          host, never a network filesystem shared by several hosts.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

WAIT_S = 5.0
LOG_EVERY_S = 300.0


def log(message: str) -> None:
    print(f"claim_gpus: {message}", file=sys.stderr, flush=True)


def candidate_gpus() -> list[str]:
    listed = os.environ.get("TEACHLOOP_GPU_IDS", "").strip()
    if listed:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch  # only here: the lock path must stay testable without CUDA

    return [str(i) for i in range(torch.cuda.device_count())]


def try_claim(gpus: list[str], wanted: int, lock_dir: Path) -> list[tuple[str, int]]:
    """Lock ``wanted`` free GPUs (in order) and return them with their lock file descriptors,
    or lock none and return ``[]``."""
    held: list[tuple[str, int]] = []
    for gpu in gpus:
        fd = os.open(lock_dir / f"gpu-{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())  # who holds it, for people
        held.append((gpu, fd))
        if len(held) == wanted:
            return held
    for _, fd in held:
        os.close(fd)  # not enough free: take none, so two waiting replicas cannot each hold half
    return []


def claim(wanted: int, lock_dir: Path) -> list[tuple[str, int]]:
    gpus = candidate_gpus()
    if wanted > len(gpus):
        raise SystemExit(
            f"claim_gpus: {wanted} GPU(s) per worker asked, but only {len(gpus)} to claim "
            f"({','.join(gpus) or 'none visible'}); check TEACHLOOP_WORKER_GPUS / TEACHLOOP_GPU_IDS"
        )
    lock_dir.mkdir(parents=True, exist_ok=True)
    last_log = 0.0
    while not (held := try_claim(gpus, wanted, lock_dir)):
        if time.monotonic() - last_log >= LOG_EVERY_S:
            log(
                f"all of GPUs {','.join(gpus)} are held by other workers on this host; waiting "
                f"(scale this service to at most {len(gpus) // wanted} per host)"
            )
            last_log = time.monotonic()
        time.sleep(WAIT_S)
    return held


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")

    per_worker = os.environ.get("TEACHLOOP_WORKER_GPUS", "1").strip().lower() or "1"
    if per_worker != "all":
        if not per_worker.isdigit() or int(per_worker) < 1:
            raise SystemExit(
                f"claim_gpus: TEACHLOOP_WORKER_GPUS must be a number or 'all', got {per_worker!r}"
            )
        held = claim(int(per_worker), Path(os.environ.get("TEACHLOOP_GPU_LOCK_DIR", "/gpu-locks")))
        for _, fd in held:
            os.set_inheritable(fd, True)  # the locks live exactly as long as the command
        ids = ",".join(gpu for gpu, _ in held)
        os.environ["CUDA_VISIBLE_DEVICES"] = ids
        log(f"running on GPU {ids}: {' '.join(command)}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()

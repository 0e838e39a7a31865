"""A live ASGI server (daphne, in a subprocess) on its own SQLite file, for browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.paths import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveSite:
    """A migrated, seeded database (``tests.e2e.seed``), then daphne serving ``teachloop.asgi:application``.

    Never the developer's database: DATABASE_URL and REDIS_URL are dropped, so the server uses
    SQLite under ``data_dir`` and the in-memory channel layer (one process).
    """

    def __init__(self, data_dir: Path, *, worker: bool = False, **env: str) -> None:
        self.data_dir = data_dir
        # With a worker, ``manage.py serve`` (daphne and the task worker in one process, the embedded
        # default): background work such as a teaching run then reaches the pages over the in-memory
        # channel layer. Without, bare daphne (faster to start).
        self.worker = worker
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "teachloop.settings",
                "TEACHLOOP_DATA_DIR": str(data_dir),
                "DEBUG": "1",
                "HF_HUB_OFFLINE": "1",
                "TEACHLOOP_TUTOR_ALTERNATIVES_SHARE": "0",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir / "daphne.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def setup(self, *seed_args: str) -> LiveSite:
        self.run("-m", "tests.e2e.seed", *seed_args)  # migrates, then creates users, course and teacher
        return self.start()

    def start(self) -> LiveSite:
        command = (
            ["manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
            if self.worker
            else ["-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "teachloop.asgi:application"]
        )
        with self.log_path.open("a") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, *command], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

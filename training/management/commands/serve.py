"""Serve the site with daphne and, on the embedded default, a task worker in the same process."""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django_tasks_db.management.commands.db_worker import Worker

from training.management.commands.worker import make_worker, run_through_outages, start_recovery_thread

logger = logging.getLogger(__name__)


def start_inprocess_worker(*, interval: float = 1.0, queues: str = "*") -> tuple[Worker, threading.Thread]:
    """Run the django-tasks-db worker loop in a daemon thread.

    The in-memory channel layer cannot cross processes, so on the embedded default the
    worker must live in the web process for its progress messages to reach browsers.
    Signals stay with daphne (only the main thread may install handlers); tasks are
    durable in the database, so one interrupted by a shutdown can be recovered. Set
    ``worker.running = False`` to stop it after its current task.
    """
    worker = make_worker(interval=interval, queues=queues)

    def run() -> None:
        from django.db import connections

        try:
            run_through_outages(worker)
        finally:
            connections.close_all()  # this thread's connections; PostgreSQL would keep them open

    thread = threading.Thread(target=run, name=f"teachloop-worker-{queues}", daemon=True)
    thread.start()
    return worker, thread


class Command(BaseCommand):
    help = (
        "Serve TeachLoop over HTTP and WebSocket with daphne. On the embedded default "
        "(no REDIS_URL) a background-task worker runs in the same process; otherwise run "
        "`python manage.py worker` separately."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("TEACHLOOP_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("TEACHLOOP_PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="Do not run a worker in this process.")

    def handle(self, *args, host: str, port: int, no_worker: bool, **options) -> None:
        from daphne.cli import CommandLineInterface

        if settings.TEACHLOOP_INPROCESS_WORKER and not no_worker:
            start_recovery_thread(threading.Event())
            # Two loops, so a short task (a model try) never waits behind a long training job.
            start_inprocess_worker(queues="default")
            start_inprocess_worker(queues="training")
            self.stdout.write("Background workers (queues: default, training) running in this process.")
        else:
            self.stdout.write("No in-process worker: run `python manage.py worker` to process jobs.")
        self.stdout.write(f"Serving TeachLoop at http://{host}:{port}/ (Ctrl-C to stop)")
        CommandLineInterface().run(["--bind", host, "--port", str(port), "teachloop.asgi:application"])

"""Run background tasks (training jobs, model tries) and recover jobs whose worker died."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from django.core.management.base import BaseCommand
from django_tasks_db.management.commands.db_worker import Worker

from training.core.errors import first_line

logger = logging.getLogger(__name__)


def start_recovery_thread(stop: threading.Event, *, every_s: float | None = None) -> threading.Thread:
    """Periodically re-queue (or fail) running jobs (and other apps' registered long work, such as
    teaching runs; see training/recovery.py) that stopped sending heartbeats."""
    from django.conf import settings
    from django.db import connection

    from training.recovery import recover_all

    every_s = every_s if every_s is not None else settings.TEACHLOOP_RECOVER_EVERY_S

    def loop() -> None:
        try:
            while True:
                try:
                    for name, ids in recover_all().items():
                        logger.warning("recovered %s whose worker died: %s", name, ids)
                except Exception:
                    logger.exception("job recovery failed; trying again in %.0f s", every_s)
                if stop.wait(every_s):
                    return
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name="teachloop-recovery", daemon=True)
    thread.start()
    return thread


def run_through_outages(worker: Worker, *, first_wait_s: float = 1.0, longest_wait_s: float = 30.0) -> None:
    """``worker.run()``, started again after the database stopped answering (a PostgreSQL restart, a
    dropped connection), waiting 1, 2, 4 … 30 s between tries: a worker outlives the outage. Work that
    was running then is resumed by recovery once its heartbeat is stale. Returns when the worker stops."""
    from django.db import InterfaceError, OperationalError, close_old_connections

    wait = first_wait_s
    while True:
        try:
            worker.run()
            return
        except (OperationalError, InterfaceError) as exc:
            if not worker.running:
                raise
            logger.warning(
                "the database is unavailable (%s); taking tasks again in %.0f s", first_line(exc), wait
            )
            close_old_connections()
            time.sleep(wait)
            wait = min(wait * 2, longest_wait_s)


def make_worker(*, interval: float = 1.0, queues: str = "*") -> Worker:
    return Worker(
        queue_names=queues.split(","),
        interval=interval,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=f"{socket.gethostname()}-{os.getpid()}-{queues}"[:64],
        excluded_queue_names=[],
    )


class Command(BaseCommand):
    help = (
        "Run a background worker: training jobs (one at a time per worker: start one worker per GPU) and "
        "other tasks from the database queue, and, with TEACHLOOP_GENERATION=workers, the pages' model "
        "replies. It also re-queues jobs whose worker died, to resume from their last checkpoint."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--queues", default="*", help="comma-separated queue names (default: all)")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls when idle")
        parser.add_argument(
            "--no-generation",
            action="store_true",
            help="do not serve the pages' model replies here (with TEACHLOOP_GENERATION=workers, "
            "e.g. a GPU host that only trains)",
        )

    def handle(self, *args, queues: str, interval: float, no_generation: bool, **options) -> None:
        logging.getLogger("django_tasks_db").setLevel(logging.INFO)
        from django.conf import settings

        from training.generation import start_generation_thread

        stop = threading.Event()
        start_recovery_thread(stop)
        if settings.TEACHLOOP_GENERATION == "workers" and not no_generation:
            start_generation_thread()
            self.stdout.write("serving the pages' model replies (TEACHLOOP_GENERATION=workers)")
        worker = make_worker(interval=interval, queues=queues)
        worker.configure_signals()
        self.stdout.write(f"worker {worker.worker_id} taking tasks from queues {queues}")
        try:
            run_through_outages(worker)
        finally:
            stop.set()

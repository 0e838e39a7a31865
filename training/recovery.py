"""Recovery of work whose worker died, for every app that runs long work in the workers.

Each app registers a function that re-queues (or fails) its own stale work and returns the ids it
recovered; the workers' recovery loop (``manage.py worker`` and ``serve``) calls them all. A
registry, not an import, because ``training`` must never import the apps built on it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
"""What a database restart or a dropped connection raises. Long work treats it as passing: a progress
write that hits it is skipped (the next one tries again), and work it interrupts is left running
without a heartbeat, for recovery to resume once the database answers."""

Recoverer = Callable[[], list[int]]
_recoverers: dict[str, Recoverer] = {}


def register(name: str, recover: Recoverer) -> None:
    """Add (or replace) the recoverer of one kind of work, e.g. "training jobs"."""
    _recoverers[name] = recover


def recover_all() -> dict[str, list[int]]:
    """Run every recoverer; one that fails is logged and does not stop the others."""
    recovered: dict[str, list[int]] = {}
    for name, recover in list(_recoverers.items()):
        try:
            ids = recover()
        except Exception:
            logger.exception("recovering %s failed", name)
            continue
        if ids:
            recovered[name] = ids
    return recovered


def drop_broken_connection() -> None:
    """After :data:`DATABASE_UNAVAILABLE`: close this thread's connection if it is broken, so that the
    next query opens a new one. Never inside a transaction (``atomic``): its owner must see the error."""
    from django.db import connection

    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def keep_alive(rows, *, every_s: float, stop: threading.Event, what: str) -> None:
    """Stamp ``heartbeat_at`` on ``rows`` (a queryset: the work, filtered by its lease) every ``every_s``
    until ``stop`` is set. Run it in a thread beside the work.

    A failed write (SQLite "database table is locked" under load, a dropped connection) is logged and
    tried again at the next beat: a heartbeat thread that died would let recovery take live work
    for dead.
    """
    from django.db import close_old_connections, connection
    from django.utils import timezone

    try:
        while not stop.wait(every_s):
            try:
                rows.update(heartbeat_at=timezone.now())
            except Exception:
                logger.warning("heartbeat of %s failed; trying again", what, exc_info=True)
                close_old_connections()
    finally:
        connection.close()


def stale_cutoff(stale_after_s: float | None = None):
    """The recovery rule of every kind of work: work whose last heartbeat is older than this
    (``TEACHLOOP_JOB_STALE_AFTER_S`` ago unless given) has lost its process; younger, it is alive."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    if stale_after_s is None:
        stale_after_s = settings.TEACHLOOP_JOB_STALE_AFTER_S
    return timezone.now() - timedelta(seconds=stale_after_s)


def recover_stale(model, *, stale_after_s: float | None, settle, broadcast) -> list[int]:
    """Recover every RUNNING row of ``model`` (rows as :func:`claim` describes) whose heartbeat is older
    than :func:`stale_cutoff`: each is locked and looked at again (its worker may have written since),
    ``settle(row, since)`` decides what becomes of it (cancelled, failed or re-queued: it sets the
    fields; ``since`` says "no heartbeat since HH:MM:SS"), then its lease is cleared, it is saved, and
    ``broadcast(row)`` tells its pages. Returns the ids recovered."""
    from django.db import transaction

    cutoff = stale_cutoff(stale_after_s)
    running = model.objects.filter(status=model.Status.RUNNING, heartbeat_at__lt=cutoff)
    recovered = []
    for pk in running.values_list("pk", flat=True):
        with transaction.atomic():
            row = model.objects.select_for_update().get(pk=pk)
            if row.status != model.Status.RUNNING or row.heartbeat_at >= cutoff:
                continue
            settle(row, f"no heartbeat since {row.heartbeat_at:%H:%M:%S}")
            row.lease = ""
            row.save()
            recovered.append(row.pk)
        broadcast(row)
    return recovered


def worker_id() -> str:
    """This worker process, as recorded on the work it runs: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(model, pk: int):
    """Atomically take queued work of ``model`` (a training job, a teaching run: rows with ``status``,
    ``lease``, ``worker``, ``heartbeat_at``, ``attempts`` and ``started_at``): it becomes RUNNING under a
    fresh lease, on this worker, with one more attempt. Returns ``(row, lease)``, or None when the row
    is gone or not queued (already taken or cancelled). Inside a caller's transaction, the caller's
    own writes about the claim commit with it.
    """
    from django.db import transaction
    from django.utils import timezone

    with transaction.atomic():
        row = model.objects.select_for_update().filter(pk=pk).first()
        if row is None or row.status != model.Status.QUEUED:
            return None
        lease, now = uuid.uuid4().hex, timezone.now()
        row.status, row.lease, row.worker, row.heartbeat_at = model.Status.RUNNING, lease, worker_id(), now
        row.attempts += 1
        row.started_at = row.started_at or now
        row.save()
    return row, lease

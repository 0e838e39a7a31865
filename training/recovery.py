"""Recovery of work whose worker died, for every app that runs long work in the workers.

Each app registers a function that re-queues (or fails) its own stale work and returns the ids it
recovered; the workers' recovery loop (``manage.py worker`` and ``serve``) calls them all. A
registry, not an import, because ``training`` must never import the apps built on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

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

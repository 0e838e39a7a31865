"""Recovery of work whose worker died, for every app that runs long work in the workers.

Each app registers a function that re-queues (or fails) its own stale work and returns the ids it
recovered; the workers' recovery loop (``manage.py worker`` and ``serve``) calls them all. A
registry, not an import, because ``training`` must never import the apps built on it.
"""

from __future__ import annotations

import logging
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

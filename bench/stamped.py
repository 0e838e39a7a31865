"""``manage.py`` plus one bench-only change: every training-job chart point that is broadcast carries
``sent_at`` (``time.time()`` just before the group send), so bench/load.py can measure how long each
progress event took to reach each socket. The app's events carry no timestamp of their own; nothing
else differs from ``manage.py`` (run it the same way: ``python bench/stamped.py serve ...``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stamp_points(message: dict) -> dict:
    """The same message with ``sent_at`` on each of its chart points (those already stamped kept)."""
    points = [{**point, "sent_at": point.get("sent_at", time.time())} for point in message.get("points", [])]
    return {**message, "points": points} if points else message


def main() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teachloop.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line

    from training import jobs

    send = jobs._send

    def stamped_send(job_id: int, message: dict) -> None:
        send(job_id, stamp_points(message))

    jobs._send = stamped_send  # broadcast_step and broadcast_state look it up at call time
    execute_from_command_line([str(ROOT / "manage.py"), *sys.argv[1:]])


if __name__ == "__main__":
    main()

"""Heartbeats of long work: a failed write is retried, never the end of the heartbeat."""

from __future__ import annotations

import threading
import time

from django.db import OperationalError

from training.recovery import keep_alive


class _Rows:
    """A queryset stand-in whose first two writes fail like a locked SQLite table."""

    def __init__(self) -> None:
        self.calls = 0
        self.written = threading.Event()

    def update(self, **fields):
        self.calls += 1
        if self.calls <= 2:
            raise OperationalError("database table is locked")
        assert "heartbeat_at" in fields
        self.written.set()
        return 1


def test_it_keeps_beating_after_the_database_refused_a_write(caplog):
    rows, stop = _Rows(), threading.Event()
    beat = threading.Thread(
        target=keep_alive, args=(rows,), kwargs={"every_s": 0.01, "stop": stop, "what": "job 7"}
    )
    beat.start()
    try:
        assert rows.written.wait(5), "no heartbeat was written after two failed ones"
    finally:
        stop.set()
        beat.join(5)
    assert not beat.is_alive()
    assert "heartbeat of job 7 failed" in caplog.text


def test_it_stops_when_asked():
    rows, stop = _Rows(), threading.Event()
    stop.set()
    started = time.monotonic()
    # In a thread, as the workers run it (the suite's event loop makes the main thread async-only).
    beat = threading.Thread(
        target=keep_alive, args=(rows,), kwargs={"every_s": 60, "stop": stop, "what": "job 8"}
    )
    beat.start()
    beat.join(5)
    assert not beat.is_alive() and time.monotonic() - started < 1 and rows.calls == 0

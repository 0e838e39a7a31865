"""stream_in_thread: a blocking generator's pieces, in order, bounded, stoppable, errors raised."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from training.core.llm import GenerationError
from training.core.llm.streaming import stream_in_thread


async def collect(pieces, **kwargs):
    out = []
    async for piece in stream_in_thread(pieces, **{"stop": threading.Event(), "max_chars": 100, **kwargs}):
        out.append(piece)
    return out


async def test_it_yields_every_piece_in_order_from_another_thread():
    threads = []

    def pieces():
        threads.append(threading.current_thread())
        yield from ["a", "b", "c"]

    assert await collect(pieces) == ["a", "b", "c"]
    assert threads[0] is not threading.main_thread()


async def test_it_cuts_the_stream_at_max_chars():
    assert await collect(lambda: iter(["abcd", "efgh", "ijkl"]), max_chars=6) == ["abcd", "ef"]


async def test_it_stops_when_asked():
    stop = threading.Event()

    def pieces():
        yield "first"
        stop.set()
        yield "second"

    assert await collect(pieces, stop=stop) == ["first"]


async def test_it_raises_the_producers_error_after_the_pieces_before_it():
    got = []

    def pieces():
        yield "partial"
        raise GenerationError("m", "server said 503")

    with pytest.raises(GenerationError, match="503"):
        async for piece in stream_in_thread(pieces, stop=threading.Event(), max_chars=100):
            got.append(piece)
    assert got == ["partial"]


async def test_streams_do_not_wait_for_each_other_to_get_a_thread():
    # Twenty streams whose pieces all wait on one event: each must be running in a thread of its
    # own before any of them can finish (the loop's executor has only a few workers).
    started = threading.Semaphore(0)
    release = threading.Event()

    def pieces():
        started.release()
        assert release.wait(30)
        yield "done"

    async def one():
        return await collect(pieces)

    tasks = [asyncio.ensure_future(one()) for _ in range(20)]
    running, deadline = 0, time.monotonic() + 10
    while running < 20 and time.monotonic() < deadline:
        if started.acquire(blocking=False):
            running += 1
        else:
            await asyncio.sleep(0.01)
    release.set()

    assert running == 20
    assert await asyncio.gather(*tasks) == [["done"]] * 20

"""stream_in_thread: a blocking generator's pieces, in order, bounded, stoppable, errors raised."""

from __future__ import annotations

import threading

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

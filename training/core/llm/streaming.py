"""Streaming a blocking model's pieces into async code, for the consumers that show replies live."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


async def stream_in_thread(
    pieces: Callable[[], Iterable[str]], *, stop: threading.Event, max_chars: int
) -> AsyncIterator[str]:
    """Yield what ``pieces()`` yields, produced in an executor thread (loading and generating block).

    Stops early when ``stop`` is set or after ``max_chars`` characters (model output is untrusted and
    unbounded; the last piece is cut to fit). An exception raised while producing is raised here,
    after the pieces that came before it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def produce() -> None:
        shown = 0
        try:
            for piece in pieces():
                if stop.is_set() or shown >= max_chars:
                    break
                piece = piece[: max_chars - shown]
                shown += len(piece)
                loop.call_soon_threadsafe(queue.put_nowait, piece)
        except BaseException as exc:  # handed to the async side, which decides what to show
            loop.call_soon_threadsafe(queue.put_nowait, _Failed(exc))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    future = loop.run_in_executor(None, produce)
    while True:
        item = await queue.get()
        if isinstance(item, str):
            yield item
            continue
        await future
        if isinstance(item, _Failed):
            raise item.exc
        return

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
    """Yield what ``pieces()`` yields, produced in a thread of its own (loading and generating block).

    Stops early when ``stop`` is set or after ``max_chars`` characters (model output is untrusted and
    unbounded; the last piece is cut to fit). An exception raised while producing is raised here,
    after the pieces that came before it. Each stream gets its own thread, not one of the event
    loop's few executor workers: a stream mostly waits for its model's batch, and twenty learners
    must all be in that batch at once.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def produce() -> None:
        shown = 0
        try:
            source = iter(pieces())
            try:
                for piece in source:
                    if stop.is_set() or shown >= max_chars:
                        break
                    piece = piece[: max_chars - shown]
                    shown += len(piece)
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()  # ends the generation behind it at once
        except BaseException as exc:  # handed to the async side, which decides what to show
            loop.call_soon_threadsafe(queue.put_nowait, _Failed(exc))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    threading.Thread(target=produce, name="stream-reader", daemon=True).start()
    while True:
        item = await queue.get()
        if isinstance(item, str):
            yield item
            continue
        if isinstance(item, _Failed):
            raise item.exc
        return

"""The embedded default's channel layer: Channels' in-memory layer, safe to send to from a thread.

``manage.py serve`` runs the worker in a thread of the web process, and the worker reports progress
with ``async_to_sync(layer.group_send)``, which runs in an event loop of that thread. The in-memory
layer's queues are asyncio queues of the server's loop and are not thread-safe: a message put from
another loop wakes the waiting socket only at the server loop's next unrelated event (daphne's
once-a-second timer: every progress event ~1 s late, ``bench/load.py``). Here a send from any other
loop is handed to the loop that receives, which wakes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import InMemoryChannelLayer

HAND_OVER_TIMEOUT_S = 10.0
"""How long a send from another thread waits for the receiving loop before it gives up (raises)."""


class ThreadSafeInMemoryChannelLayer(InMemoryChannelLayer):
    """:class:`InMemoryChannelLayer` whose sends from another event loop run on the receiving one."""

    _home: asyncio.AbstractEventLoop | None = None

    async def receive(self, channel: str) -> dict[str, Any]:
        self._home = asyncio.get_running_loop()
        return await super().receive(channel)

    async def group_add(self, group: str, channel: str) -> None:
        self._home = asyncio.get_running_loop()
        await super().group_add(group, channel)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._at_home(super().send, channel, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._at_home(super().group_send, group, message)

    async def _at_home(self, method: Callable[..., Awaitable[None]], *args: Any) -> None:
        home = self._home
        if home is None or home.is_closed() or not home.is_running() or home is asyncio.get_running_loop():
            await method(*args)
            return
        future = asyncio.run_coroutine_threadsafe(method(*args), home)
        await asyncio.wait_for(asyncio.wrap_future(future), HAND_OVER_TIMEOUT_S)

"""The embedded default's channel layer delivers a worker thread's sends at once."""

from __future__ import annotations

import asyncio
import threading
import time

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from teachloop.channel_layers import ThreadSafeInMemoryChannelLayer

IDLE_S = 4.0  # the waiting loop's only other event: a timer this far away


def deliver_from_a_thread(layer: InMemoryChannelLayer) -> tuple[dict, float]:
    """A socket waits on ``layer`` in a loop with nothing else to do for ``IDLE_S``; a thread (the
    in-process worker) sends to its group from its own loop. The message and the seconds from the
    send to the socket waking."""

    async def main() -> tuple[dict, float]:
        channel = await layer.new_channel()
        await layer.group_add("job-1", channel)
        receiving = asyncio.create_task(layer.receive(channel))
        sent_at: list[float] = []

        def worker() -> None:
            time.sleep(0.3)  # the loop is asleep in select() by now
            sent_at.append(time.monotonic())
            async_to_sync(layer.group_send)("job-1", {"type": "job.update", "step": 3})

        thread = threading.Thread(target=worker)
        thread.start()
        try:
            await asyncio.wait({receiving}, timeout=IDLE_S)
            return receiving.result(), time.monotonic() - sent_at[0]
        finally:
            await asyncio.to_thread(thread.join)  # never block the loop the send is handed to

    return asyncio.run(main())


def test_a_send_from_the_worker_thread_wakes_the_waiting_socket_at_once():
    message, waited = deliver_from_a_thread(ThreadSafeInMemoryChannelLayer())
    assert message == {"type": "job.update", "step": 3}
    assert waited < IDLE_S / 2  # woken by the send itself, not by the loop's next timer


def test_channels_own_in_memory_layer_wakes_it_only_at_the_next_timer():
    # Why the default is not Channels' layer: the put from another thread does not wake the loop
    # (in daphne the next timer came within ~1 s: every progress event arrived that late).
    message, waited = deliver_from_a_thread(InMemoryChannelLayer())
    assert message == {"type": "job.update", "step": 3} and waited > IDLE_S / 2


def test_sends_inside_the_receiving_loop_and_before_any_receiver_still_arrive():
    layer = ThreadSafeInMemoryChannelLayer()
    async_to_sync(layer.send)("early.channel", {"type": "a"})  # no loop has received yet

    async def main() -> list[dict]:
        got = [await layer.receive("early.channel")]
        await layer.send("early.channel", {"type": "b"})
        got.append(await layer.receive("early.channel"))
        return got

    assert asyncio.run(main()) == [{"type": "a"}, {"type": "b"}]


def test_a_send_after_the_receiving_loop_closed_is_kept_for_the_next_one():
    layer = ThreadSafeInMemoryChannelLayer()

    async def listen() -> None:
        await layer.group_add("g", "c.1")

    asyncio.run(listen())  # that loop is closed now
    async_to_sync(layer.group_send)("g", {"type": "late"})

    async def read() -> dict:
        return await layer.receive("c.1")

    assert asyncio.run(read()) == {"type": "late"}

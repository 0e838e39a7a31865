"""Generation for the pages (learners' tutor, Try it, the Playground): in this process, or in workers.

``stream(request, stop=..., max_chars=...)`` is the one way a consumer gets a model's reply. Where it
is generated is a setting (``TEACHLOOP_GENERATION``):

- ``inline`` (the embedded default, whose worker lives in the web process anyway): a thread of this
  process loads the model and streams (:func:`training.core.llm.streaming.stream_in_thread`);
- ``workers`` (production): the request goes over the channel layer to the worker processes
  (``manage.py worker`` runs a :class:`GenerationServer`); web processes never load a model. The
  worker's model batches every stream it serves (``training.core.llm.batching``).

Rules of the ``workers`` protocol:

- A request names what to generate with (a registered model's id, an adapter's name and folder), never
  a loaded object; the worker resolves it (:func:`generate_pieces`).
- The web side sends ``generation.request`` to :data:`GENERATION_CHANNEL` with a reply channel of its
  own; a worker answers ``generation.started`` (with its control channel, where a stop goes), then
  ``generation.piece`` messages (pieces written within :data:`FLUSH_S` go together), a
  ``generation.alive`` every :data:`HEARTBEAT_S` while nothing else is sent (loading a model), and
  last ``generation.end`` or one ``generation.error`` line.
- Nobody answers within :data:`START_TIMEOUT_S`: :class:`NoGenerationWorker`, a message saying to
  start a worker. Silence for :data:`IDLE_TIMEOUT_S` after that (a killed worker):
  :class:`WorkerLost`. A request a worker receives after its start deadline is dropped (its
  reader has given up).
- A reader that can start over (``on_restart``: it has shown nobody the pieces so far, as the
  learners' tutor, which shows a reply only once it is checked, and :func:`whole`) asks again, once
  (:data:`WORKER_LOST_RETRIES`), when its worker is lost: ``on_restart()`` is called, and the pieces
  then come from the start of a new reply. Readers that show pieces as they come get the error.
- Stopping (the ``stop`` event, or the page closing) sends ``generation.stop``; the worker ends the
  generation within a token and answers ``generation.end``.
- The channel layer failing mid-request (Redis restarting) raises :class:`ChannelLayerDown`: nothing
  is known of the reply's fate, and the worker stops writing it at its next send. A reader that can
  start over queues the reply again for when the layer is back (:func:`layer_down` tells such
  failures from the model's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

from training.core.llm import GenerationParams, LLMError
from training.core.llm.base import GenerationError
from training.core.llm.streaming import stream_in_thread

logger = logging.getLogger(__name__)

GENERATION_CHANNEL = "teachloop.generation"
START_TIMEOUT_S = 15.0
HEARTBEAT_S = 5.0
IDLE_TIMEOUT_S = 3 * HEARTBEAT_S  # three heartbeats missed: the worker is gone
WORKER_LOST_RETRIES = 1  # a reader that can start over asks again this many times
FLUSH_S = 0.05
POLL_S = 0.25  # how often the web side looks at its stop event while it waits


class NoGenerationWorker(GenerationError):
    """No worker took the request: none is running, or all are gone."""


class WorkerLost(GenerationError):
    """The worker that took the request stopped answering mid-reply (killed, or its machine gone)."""


class ChannelLayerDown(GenerationError):
    """The channel layer between this process and the workers failed (Redis down or restarting)."""


def _layer_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # no Redis client installed: only the in-memory layer, which does not fail so
        return (ChannelLayerDown,)
    return (ChannelLayerDown, RedisConnectionError, RedisTimeoutError)


def layer_down(exc: BaseException) -> bool:
    """Whether ``exc`` is the channel layer failing (Redis unreachable), not the model. Only Redis's own
    connection errors count: an ``OSError`` may be a model's (a missing file, a teacher server down)."""
    return isinstance(exc, _layer_errors())


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate with and from: plain data, sent as is over the channel layer."""

    model_id: int
    conversation: list[dict[str, str]]
    params: dict[str, Any]
    adapter: tuple[str, str] | None = None  # (name, folder) of a LoRA adapter of the model
    whole: bool = False  # one piece, generated with ``generate`` (a decision nobody reads live)

    @classmethod
    def of(
        cls,
        *,
        model_id: int,
        conversation: list[dict[str, str]],
        params: GenerationParams,
        adapter: tuple[str, str] | None = None,
        whole: bool = False,
    ) -> GenerationRequest:
        return cls(model_id, conversation, dataclasses.asdict(params), adapter, whole)

    def to_message(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "conversation": self.conversation,
            "params": {**self.params, "stop": list(self.params.get("stop") or ())},
            "adapter": list(self.adapter) if self.adapter else None,
            "whole": self.whole,
        }

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> GenerationRequest:
        adapter = data.get("adapter")
        params = dict(data["params"])
        params["stop"] = tuple(params.get("stop") or ())
        return cls(
            model_id=int(data["model_id"]),
            conversation=list(data["conversation"]),
            params=params,
            adapter=(str(adapter[0]), str(adapter[1])) if adapter else None,
            whole=bool(data.get("whole")),
        )


def generate_pieces(request: GenerationRequest) -> Iterable[str]:
    """The reply's pieces, generated in this process (blocks: loading, then generating)."""
    from training import services
    from training.models import LanguageModel

    model = LanguageModel.objects.filter(pk=request.model_id, enabled=True).first()
    if model is None:
        raise GenerationError(f"model {request.model_id}", "this model was deleted or disabled")
    llm = services.language_model_llm(model=model, page=True)
    name = None
    if request.adapter is not None:
        name = services.language_model_adapter_on(llm=llm, name=request.adapter[0], path=request.adapter[1])
    params = GenerationParams(**request.params)
    if request.whole:
        return [llm.generate([request.conversation], params, adapter=name)[0].text]
    return llm.stream(request.conversation, params, adapter=name)


def _pieces_in_own_thread(request: GenerationRequest) -> Iterable[str]:
    """:func:`generate_pieces` in a thread made for one reply, which must not keep a connection open."""
    try:
        return generate_pieces(request)
    finally:
        connections.close_all()  # this thread's own (the pieces need no database)


def whole_reply(request: GenerationRequest, *, max_chars: int) -> str:
    """The whole reply at once, for synchronous code (a teacher's verdict on a learner's answer); where
    the settings say. Raises :class:`LLMError`."""
    if not in_workers():
        return "".join(generate_pieces(dataclasses.replace(request, whole=True)))[:max_chars]
    return async_to_sync(whole)(request, max_chars=max_chars)


async def whole(request: GenerationRequest, *, max_chars: int) -> str:
    """The whole reply at once (one ``generate`` call), for async code; where the settings say."""
    parts: list[str] = []
    pieces = stream(
        dataclasses.replace(request, whole=True),
        stop=threading.Event(),
        max_chars=max_chars,
        on_restart=parts.clear,
    )
    async for piece in pieces:
        parts.append(piece)
    return "".join(parts)


def in_workers() -> bool:
    return settings.TEACHLOOP_GENERATION == "workers"


async def stream(
    request: GenerationRequest,
    *,
    stop: threading.Event,
    max_chars: int,
    on_restart: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """The reply's pieces, wherever the settings generate them (module docstring). Raises
    :class:`LLMError` (with a line for the person) when the model or the worker fails. With
    ``on_restart``, a lost worker's reply is asked again (module docstring)."""
    if not in_workers():
        pieces = stream_in_thread(lambda: _pieces_in_own_thread(request), stop=stop, max_chars=max_chars)
        async for piece in pieces:
            yield piece
        return
    retries = WORKER_LOST_RETRIES if on_restart is not None else 0
    for attempt in range(retries + 1):
        try:
            async for piece in _remote(request, stop=stop, max_chars=max_chars):
                yield piece
            return
        except WorkerLost:
            if on_restart is None or attempt == retries or stop.is_set():
                raise
            logger.warning("generation: the worker stopped answering mid-reply; asking again")
            on_restart()


async def _remote(request: GenerationRequest, *, stop: threading.Event, max_chars: int) -> AsyncIterator[str]:
    try:
        async for piece in _remote_pieces(request, stop=stop, max_chars=max_chars):
            yield piece
    except Exception as exc:
        if layer_down(exc) and not isinstance(exc, ChannelLayerDown):
            raise ChannelLayerDown(
                "generation", "the connection to the generation workers was lost (is Redis running?)"
            ) from exc
        raise


async def _remote_pieces(
    request: GenerationRequest, *, stop: threading.Event, max_chars: int
) -> AsyncIterator[str]:
    layer = get_channel_layer()
    # The default prefix, as the consumers' own channels: channels_redis serves every process-local
    # channel of one prefix from one Redis list behind one lock, and a receive on a second prefix
    # would wait for that lock until a consumer's message arrived.
    reply = await layer.new_channel()
    request_id = uuid.uuid4().hex
    await layer.send(
        GENERATION_CHANNEL,
        {
            "type": "generation.request",
            "id": request_id,
            "reply_to": reply,
            "request": request.to_message(),
            "max_chars": max_chars,
            "deadline": time.time() + START_TIMEOUT_S,
        },
    )
    control: str | None = None
    stop_sent = False
    started = False
    waited = 0.0
    receiving: asyncio.Task | None = None
    try:
        while True:
            if stop.is_set() and control is not None and not stop_sent:
                await layer.send(control, {"type": "generation.stop", "id": request_id})
                stop_sent = True
            if receiving is None:
                receiving = asyncio.ensure_future(layer.receive(reply))
            done, _ = await asyncio.wait({receiving}, timeout=POLL_S)
            if not done:
                waited += POLL_S
                if not started and waited >= START_TIMEOUT_S:
                    raise NoGenerationWorker(
                        "generation", "no worker took the request: start one with `python manage.py worker`"
                    )
                if started and waited >= IDLE_TIMEOUT_S:
                    raise WorkerLost("generation", "the worker stopped answering (was it stopped?)")
                if stop.is_set() and not started and waited >= POLL_S * 4:
                    return  # stopped before any worker answered: nothing to wait for
                continue
            message, receiving, waited = receiving.result(), None, 0.0
            kind = message.get("type")
            if kind == "generation.started":
                started, control = True, message.get("control")
            elif kind == "generation.piece":
                yield str(message.get("text", ""))
            elif kind == "generation.end":
                return
            elif kind == "generation.error":
                raise GenerationError("generation", str(message.get("message") or "generation failed"))
    finally:
        if receiving is not None and not receiving.done():
            receiving.cancel()
        if control is not None and not stop_sent and (stop.is_set() or not started):
            try:
                await layer.send(control, {"type": "generation.stop", "id": request_id})
            except Exception as exc:  # the layer is down: the worker's next send fails and it stops anyway
                if not layer_down(exc):
                    raise


class GenerationServer:
    """A worker's side of the protocol: takes requests from :data:`GENERATION_CHANNEL` and streams
    each reply back (every request in a task of its own: all of them join the model's batch)."""

    def __init__(self, layer: Any | None = None) -> None:
        self.layer = layer or get_channel_layer()
        self.control = ""
        self._stops: dict[str, threading.Event] = {}
        self._tasks: set[asyncio.Task] = set()

    async def serve(self, finished: asyncio.Event | None = None) -> None:
        """Serve until ``finished`` is set (or for ever)."""
        finished = finished or asyncio.Event()
        self.control = await self.layer.new_channel()
        listeners = [
            asyncio.ensure_future(self._listen(GENERATION_CHANNEL, self._start)),
            asyncio.ensure_future(self._listen(self.control, self._stop)),
        ]
        try:
            await finished.wait()
        finally:
            for task in [*listeners, *self._tasks]:
                task.cancel()
            for event in self._stops.values():
                event.set()

    async def _listen(self, channel: str, handle) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the channel layer went away (Redis restarting): try again shortly
                logger.exception("generation: receiving from %s failed; retrying in 1 s", channel)
                await asyncio.sleep(1.0)
                continue
            handle(message)

    def _stop(self, message: dict[str, Any]) -> None:
        event = self._stops.get(str(message.get("id")))
        if event is not None:
            event.set()

    def _start(self, message: dict[str, Any]) -> None:
        if message.get("type") != "generation.request":
            return
        if not (isinstance(message.get("id"), str) and isinstance(message.get("reply_to"), str)):
            logger.warning("generation: dropped a request without an id or a reply channel")
            return
        if float(message.get("deadline") or 0) < time.time():
            logger.warning("generation: dropped request %s: its reader had given up", message.get("id"))
            return
        task = asyncio.ensure_future(self._serve_one(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_one(self, message: dict[str, Any]) -> None:
        request_id, reply = str(message["id"]), str(message["reply_to"])
        stop = self._stops[request_id] = threading.Event()
        send = self.layer.send
        try:
            await send(reply, {"type": "generation.started", "id": request_id, "control": self.control})
            try:
                request = GenerationRequest.from_message(message["request"])
                max_chars = int(message.get("max_chars") or 8000)
            except (KeyError, TypeError, ValueError) as exc:
                await send(reply, {"type": "generation.error", "message": f"a malformed request: {exc}"})
                return
            buffer, sent_at = "", time.monotonic()
            heartbeat = asyncio.ensure_future(self._heartbeat(reply, request_id))
            try:
                pieces = stream_in_thread(
                    lambda: _pieces_in_own_thread(request), stop=stop, max_chars=max_chars
                )
                async for piece in pieces:
                    buffer += piece
                    if time.monotonic() - sent_at >= FLUSH_S:
                        await send(reply, {"type": "generation.piece", "text": buffer})
                        buffer, sent_at = "", time.monotonic()
            finally:
                heartbeat.cancel()
            if buffer:
                await send(reply, {"type": "generation.piece", "text": buffer})
            await send(reply, {"type": "generation.end", "stopped": stop.is_set()})
        except LLMError as exc:
            await self._error(reply, str(exc))
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception as exc:  # the person gets one line; the log gets the trace
            logger.exception("generation: request %s failed", request_id)
            await self._error(reply, f"generation failed: {type(exc).__name__}: {exc}")
        finally:
            stop.set()
            self._stops.pop(request_id, None)

    async def _heartbeat(self, reply: str, request_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self.layer.send(reply, {"type": "generation.alive", "id": request_id})

    async def _error(self, reply: str, line: str) -> None:
        try:
            await self.layer.send(reply, {"type": "generation.error", "message": line})
        except Exception:
            logger.exception("generation: could not send an error line to %s", reply)


def start_generation_thread() -> threading.Thread:
    """Run a :class:`GenerationServer` in a daemon thread with an event loop of its own."""

    def run() -> None:
        asyncio.run(GenerationServer().serve())

    thread = threading.Thread(target=run, name="teachloop-generation", daemon=True)
    thread.start()
    return thread

"""WebSocket consumers of the training app."""

from __future__ import annotations

import asyncio
import threading
from abc import ABCMeta, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.template.loader import render_to_string

from teachloop.consumers import FORBIDDEN, NOT_FOUND, FormConsumer, FormMessage, parse_form
from training import generation
from training.core.llm import GenerationParams, LLMError
from training.generation import GenerationRequest
from training.jobs import job_group, with_points
from training.models import Adapter, LanguageModel

MAX_PROMPT_CHARS = 4000
MAX_STREAM_CHARS = 8000  # model output is untrusted: stop showing it past a sane length
MAX_PLAYGROUND_ADAPTERS = 6  # columns run one after the other: keep one prompt's wait bounded


class _ModelStreamConsumer(FormConsumer, metaclass=ABCMeta):
    """What Try it and the Playground share: staff only, one registered model per socket, one
    generation at a time per socket. Forms: ``prompt`` (plus what a subclass reads) to start,
    ``stop`` to stop; a prompt while one is generating is refused with a status line.

    Subclasses implement :meth:`send_status` and :meth:`generation`.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated and user.is_staff):
            await self.close(code=FORBIDDEN)
            return
        self.model = await _get_model(self.scope["url_route"]["kwargs"]["model_id"])
        if self.model is None:
            await self.close(code=NOT_FOUND)
            return
        self.stop_event = threading.Event()
        self.pump: asyncio.Task | None = None
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "stop_event", None) is not None:
            self.stop_event.set()

    async def receive_form(self, form: FormMessage) -> None:
        if "stop" in form:
            self.stop_event.set()
            return
        prompt = (form.text("prompt") or "").strip()[:MAX_PROMPT_CHARS]
        if not prompt:
            await self.send_status("Type a prompt first.")
            return
        if self.pump is not None and not self.pump.done():
            await self.send_status("Still generating: stop it first.")
            return
        generation = await self.generation(prompt, form)
        if generation is not None:
            self.stop_event = threading.Event()
            self.pump = asyncio.create_task(generation)

    @abstractmethod
    async def send_status(self, status: str, *, error: bool = False) -> None:
        """Show one line about the whole socket (a refused form, a finished generation)."""

    @abstractmethod
    async def generation(self, prompt: str, form: FormMessage) -> Coroutine[Any, Any, None] | None:
        """The coroutine that streams the answer to ``form``, or ``None`` after refusing it."""

    async def stream_reply(
        self, request: GenerationRequest, send_piece: Callable[[str], Awaitable[None]]
    ) -> tuple[str, bool]:
        """Show the reply to ``request`` (generated where the settings say: ``training.generation``)
        through ``send_piece``, escaped by its template and cut at MAX_STREAM_CHARS; return the closing
        line and whether it is an error."""
        stop_event = self.stop_event
        try:
            async for piece in generation.stream(request, stop=stop_event, max_chars=MAX_STREAM_CHARS):
                await send_piece(piece)
        except LLMError as exc:
            return str(exc), True
        except Exception as exc:  # never a traceback in the browser
            return f"{self.model.name}: {type(exc).__name__}: {exc}", True
        return ("Stopped." if stop_event.is_set() else "Done."), False


class ModelTryConsumer(_ModelStreamConsumer):
    """Streams a registered model's reply to a prompt, piece by piece, to staff only.

    Forms: ``prompt`` to start, ``stop`` to stop. Replies are HTML fragments (escaped by the
    template) swapped in by ``id``.
    """

    async def send_status(self, status: str, *, error: bool = False) -> None:
        await self._send("status", {"status": status, "error": error})

    async def generation(self, prompt: str, form: FormMessage) -> Coroutine[Any, Any, None]:
        return self._stream(prompt)

    async def _stream(self, prompt: str) -> None:
        model = self.model
        request = GenerationRequest.of(
            model_id=model.pk,
            conversation=[{"role": "user", "content": prompt}],
            params=model.generation_params(),
        )
        await self._send("start", {"status": "Generating…"})
        status, error = await self.stream_reply(request, lambda piece: self._send("piece", {"piece": piece}))
        await self.send_status(status, error=error)

    async def _send(self, fragment: str, context: dict) -> None:
        html = render_to_string(
            "training/partials/try_stream.html#" + fragment, {"model": self.model, **context}
        )
        await self.send(text_data=html)


@database_sync_to_async
def _get_model(model_id: int) -> LanguageModel | None:
    return LanguageModel.objects.filter(pk=model_id, enabled=True).first()


@dataclass(frozen=True)
class PlaygroundColumn:
    """One student answering in the Playground: the base (``adapter_id`` None) or one adapter."""

    key: str  # part of the column's element ids
    label: str
    adapter_id: int | None = None
    adapter_path: str = ""

    @property
    def adapter(self) -> tuple[str, str] | None:
        """(name, folder) of the column's adapter; None for the base."""
        return None if self.adapter_id is None else (f"adapter-{self.adapter_id}", self.adapter_path)


class PlaygroundConsumer(_ModelStreamConsumer):
    """One prompt answered by a model's base and by chosen adapters of it, column after column.

    Forms: ``prompt`` with ``adapter`` (the ids of the ticked adapters; htmx sends one as a string,
    several as a list) to start, ``stop`` to stop. Every refused message gets a status line, never
    a closed socket: a message that is not a form, an empty prompt, an adapter of another model.
    Each column ends with "Done.", "Stopped." or the error that ended it.
    """

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        form = parse_form(text_data)
        if form is None:
            await self.send_status("That message was not a form; nothing was generated.", error=True)
            return
        await self.receive_form(form)

    async def send_status(self, status: str, *, error: bool = False) -> None:
        await self._send("status", {"status": status, "error": error})

    async def generation(self, prompt: str, form: FormMessage) -> Coroutine[Any, Any, None] | None:
        values = form.values("adapter")
        if len(values) > MAX_PLAYGROUND_ADAPTERS:
            await self.send_status(f"Choose at most {MAX_PLAYGROUND_ADAPTERS} adapters.", error=True)
            return None
        ids = _ids(values)
        if ids is None:
            await self.send_status("Unknown adapter: tick adapters from the list.", error=True)
            return None
        columns, refusal = await _playground_columns(self.model, ids)
        if refusal:
            await self.send_status(refusal, error=True)
            return None
        return self._stream(prompt, columns)

    async def _stream(self, prompt: str, columns: list[PlaygroundColumn]) -> None:
        stop_event, model = self.stop_event, self.model
        params: GenerationParams = model.generation_params()
        await self._send("columns", {"prompt": prompt, "columns": columns, "status": "Generating…"})
        for column in columns:
            if stop_event.is_set():
                await self._send("column_status", {"column": column, "status": "Stopped."})
                continue
            await self._send("column_status", {"column": column, "status": "Generating…"})

            request = GenerationRequest.of(
                model_id=model.pk,
                conversation=[{"role": "user", "content": prompt}],
                params=params,
                adapter=column.adapter,
            )

            async def send_piece(piece: str, column: PlaygroundColumn = column) -> None:
                await self._send("piece", {"column": column, "piece": piece})

            status, error = await self.stream_reply(request, send_piece)
            await self._send("column_status", {"column": column, "status": status, "error": error})
        await self.send_status("Stopped." if stop_event.is_set() else "Done.")

    async def _send(self, fragment: str, context: dict) -> None:
        html = render_to_string(
            "training/partials/playground_stream.html#" + fragment, {"model": self.model, **context}
        )
        await self.send(text_data=html)


def _ids(values: list[object]) -> list[int] | None:
    """The values as ids, in order and without repeats, or ``None`` when one is not a whole number."""
    ids: dict[int, None] = {}
    for value in values:
        if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12):
            return None
        ids[int(value)] = None
    return list(ids)


@database_sync_to_async
def _playground_columns(model: LanguageModel, ids: list[int]) -> tuple[list[PlaygroundColumn], str]:
    """The base's column and one per adapter in ``ids``, or a line saying why they are refused."""
    columns = [PlaygroundColumn(key="base", label=f"{model.name} (base)")]
    if not ids:
        return columns, ""
    if model.backend == LanguageModel.Backend.OPENAI:
        return [], f"{model.name} is served over HTTP: it has no adapters here, only the base answers."
    found = {a.pk: a for a in Adapter.objects.filter(pk__in=ids).select_related("base_model")}
    for adapter_id in ids:
        adapter = found.get(adapter_id)
        if adapter is None:
            return [], f"There is no adapter {adapter_id}."
        if adapter.base_model_id != model.pk:
            return [], f"Adapter {adapter} was trained on {adapter.base_model.name}, not {model.name}."
        columns.append(
            PlaygroundColumn(
                key=f"adapter-{adapter.pk}",
                label=str(adapter),
                adapter_id=adapter.pk,
                adapter_path=adapter.path,
            )
        )
    return columns, ""


class TrainingJobConsumer(FormConsumer):
    """Live state of one training job: on connect the current state and every past metric,
    then each update. Staff, or the user who created the job, only."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not (user and user.is_authenticated):
            await self.close(code=FORBIDDEN)
            return
        snapshot = await _job_snapshot(job_id, user)
        if snapshot is None:
            await self.close(code=FORBIDDEN)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        html, points = snapshot
        await self.send(text_data=with_points(html, points))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_update(self, event: dict) -> None:
        html = event["html"]
        if "points" in event:  # sent by a worker from before updates were rendered once, by the sender
            html = with_points(html, event["points"])
        await self.send(text_data=html)


@database_sync_to_async
def _job_snapshot(job_id: int, user) -> tuple[str, list[dict]] | None:
    from training.jobs import job_state_html
    from training.models import TrainingJob

    job = TrainingJob.objects.filter(pk=job_id).select_related("base_model", "adapter").first()
    if job is None or not (user.is_staff or job.created_by_id == user.pk):
        return None
    points = [{"step": m.step, "loss": m.loss, "eval_loss": m.eval_loss} for m in job.metrics.all()]
    return job_state_html(job), points

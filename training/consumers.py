"""WebSocket consumers of the training app."""

from __future__ import annotations

import asyncio
import json
import threading

from channels.db import database_sync_to_async
from django.template.loader import render_to_string

from teachloop.consumers import FORBIDDEN, NOT_FOUND, FormConsumer, FormMessage
from training import services
from training.core.llm import GenerationParams, LLMError
from training.core.llm.streaming import stream_in_thread
from training.jobs import job_group
from training.models import LanguageModel

MAX_PROMPT_CHARS = 4000
MAX_STREAM_CHARS = 8000  # model output is untrusted: stop showing it past a sane length


class ModelTryConsumer(FormConsumer):
    """Streams a registered model's reply to a prompt, piece by piece, to staff only.

    Forms: ``prompt`` to start, ``stop`` to stop. Replies are HTML fragments (escaped by the
    template) swapped in by ``id``.
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
            await self._send("status", {"status": "Type a prompt first."})
            return
        if self.pump is not None and not self.pump.done():
            await self._send("status", {"status": "Still generating: stop it first."})
            return
        self.stop_event = threading.Event()
        self.pump = asyncio.create_task(self._stream(prompt))

    async def _stream(self, prompt: str) -> None:
        stop_event, model = self.stop_event, self.model

        def pieces():
            llm = services.language_model_llm(model=model)
            params: GenerationParams = model.generation_params()
            return llm.stream([{"role": "user", "content": prompt}], params)

        await self._send("start", {"status": "Generating…"})
        try:
            async for piece in stream_in_thread(pieces, stop=stop_event, max_chars=MAX_STREAM_CHARS):
                await self._send("piece", {"piece": piece})
        except LLMError as exc:
            await self._send("status", {"status": str(exc), "error": True})
        except Exception as exc:  # never a traceback in the browser
            await self._send(
                "status", {"status": f"{model.name}: {type(exc).__name__}: {exc}", "error": True}
            )
        else:
            await self._send(
                "status", {"status": "Stopped." if stop_event.is_set() else "Done.", "error": False}
            )

    async def _send(self, fragment: str, context: dict) -> None:
        html = render_to_string(
            "training/partials/try_stream.html#" + fragment, {"model": self.model, **context}
        )
        await self.send(text_data=html)


@database_sync_to_async
def _get_model(model_id: int) -> LanguageModel | None:
    return LanguageModel.objects.filter(pk=model_id, enabled=True).first()


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
        await self.send(text_data=_with_points(html, points))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_update(self, event: dict) -> None:
        await self.send(text_data=_with_points(event["html"], event.get("points", [])))


def _with_points(html: str, points: list[dict]) -> str:
    """The state fragment plus the new chart points as escaped JSON in a data attribute."""
    return html + render_to_string("training/partials/job_points.html", {"points": json.dumps(points)})


@database_sync_to_async
def _job_snapshot(job_id: int, user) -> tuple[str, list[dict]] | None:
    from training.jobs import job_state_html
    from training.models import TrainingJob

    job = TrainingJob.objects.filter(pk=job_id).select_related("base_model", "adapter").first()
    if job is None or not (user.is_staff or job.created_by_id == user.pk):
        return None
    points = [{"step": m.step, "loss": m.loss, "eval_loss": m.eval_loss} for m in job.metrics.all()]
    return job_state_html(job), points

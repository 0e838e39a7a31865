"""The WebSocket of an evaluation's page."""

from __future__ import annotations

from channels.db import database_sync_to_async

from teachloop.consumers import LiveStateConsumer
from tutor.evals.live import evaluation_fragments, evaluation_group


class EvaluationConsumer(LiveStateConsumer):
    """Live state of one evaluation, staff only (see :class:`~teachloop.consumers.LiveStateConsumer`)."""

    id_kwarg = "evaluation_id"

    def group(self, object_id: int) -> str:
        return evaluation_group(object_id)

    async def snapshot(self, object_id: int) -> dict[str, str] | None:
        return await _snapshot(object_id)

    async def evaluation_update(self, event: dict) -> None:
        await self.send_fragments(event)


@database_sync_to_async
def _snapshot(evaluation_id: int) -> dict[str, str] | None:
    from tutor.models import Evaluation

    row = Evaluation.objects.filter(pk=evaluation_id).select_related("course", "student").first()
    return evaluation_fragments(row) if row is not None else None

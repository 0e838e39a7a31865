"""The WebSocket of an evaluation's page."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from teachloop.consumers import FORBIDDEN, NOT_FOUND, FormConsumer
from tutor.evals.live import evaluation_fragments, evaluation_group


class EvaluationConsumer(FormConsumer):
    """Live state of one evaluation, staff only: on connect the current state, then each update.
    With ``?part=row`` the evaluation's row of the list instead of the page's live part."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated and user.is_staff):
            await self.close(code=FORBIDDEN)
            return
        evaluation_id = self.scope["url_route"]["kwargs"]["evaluation_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.part = "row" if query.get("part") == ["row"] else "state"
        fragments = await _snapshot(evaluation_id)
        if fragments is None:
            await self.close(code=NOT_FOUND)
            return
        self.group = evaluation_group(evaluation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=fragments[self.part])

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def evaluation_update(self, event: dict) -> None:
        await self.send(text_data=event["fragments"][self.part])


@database_sync_to_async
def _snapshot(evaluation_id: int) -> dict[str, str] | None:
    from tutor.models import Evaluation

    row = Evaluation.objects.filter(pk=evaluation_id).select_related("course", "student").first()
    return evaluation_fragments(row) if row is not None else None

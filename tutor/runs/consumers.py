"""The WebSocket of a teaching run's page."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from teachloop.consumers import FORBIDDEN, NOT_FOUND, FormConsumer
from tutor.runs.live import teaching_run_fragments, teaching_run_group


class TeachingRunConsumer(FormConsumer):
    """Live state of one teaching run, staff only: on connect the current state from the database
    (a page opened late sees every finished round), then each update the run pushes.

    Messages are HTML fragments (escaped by their templates) that htmx's ws extension swaps in by
    id: the run page's live part, or with ``?part=row`` the run's row of the run list.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated and user.is_staff):
            await self.close(code=FORBIDDEN)
            return
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.part = "row" if query.get("part") == ["row"] else "state"
        fragments = await _run_snapshot(run_id)
        if fragments is None:
            await self.close(code=NOT_FOUND)
            return
        self.group = teaching_run_group(run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=fragments[self.part])

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_update(self, event: dict) -> None:
        await self.send(text_data=event["fragments"][self.part])


@database_sync_to_async
def _run_snapshot(run_id: int) -> dict[str, str] | None:
    from tutor.models import TeachingRun

    run = TeachingRun.objects.filter(pk=run_id).select_related("course", "student", "teacher").first()
    return teaching_run_fragments(run) if run is not None else None

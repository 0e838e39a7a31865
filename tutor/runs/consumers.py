"""The WebSocket of a teaching run's page."""

from __future__ import annotations

from channels.db import database_sync_to_async

from teachloop.consumers import LiveStateConsumer
from tutor.runs.live import teaching_run_fragments, teaching_run_group


class TeachingRunConsumer(LiveStateConsumer):
    """Live state of one teaching run, staff only: on connect the current state from the database
    (a page opened late sees every finished round), then each update the run pushes.

    Messages are HTML fragments (escaped by their templates) that htmx's ws extension swaps in by
    id: the run page's live part, or with ``?part=row`` the run's row of the run list.
    """

    id_kwarg = "run_id"

    def group(self, object_id: int) -> str:
        return teaching_run_group(object_id)

    async def snapshot(self, object_id: int) -> dict[str, str] | None:
        return await _run_snapshot(object_id)

    async def run_update(self, event: dict) -> None:
        await self.send_fragments(event)


@database_sync_to_async
def _run_snapshot(run_id: int) -> dict[str, str] | None:
    from tutor.models import TeachingRun

    run = TeachingRun.objects.filter(pk=run_id).select_related("course", "student", "teacher").first()
    return teaching_run_fragments(run) if run is not None else None

"""Background tasks of the tutor app (run by the database-backed worker; see ``manage.py worker``)."""

from __future__ import annotations

from django_tasks import task


@task(queue_name="training")
def run_teaching_run(run_id: int) -> str:
    """Run (or resume) one teaching run (claimed atomically; a duplicate delivery is skipped)."""
    from tutor.runs.services import teaching_run_work

    return teaching_run_work(run_id=run_id)

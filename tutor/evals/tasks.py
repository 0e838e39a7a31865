"""Background tasks of evaluations (run by the database-backed worker; see ``manage.py worker``)."""

from __future__ import annotations

from django_tasks import task


@task(queue_name="training")
def run_evaluation(evaluation_id: int) -> str:
    """Run one evaluation (claimed atomically; a duplicate delivery is skipped)."""
    from tutor.evals.services import evaluation_work

    return evaluation_work(evaluation_id=evaluation_id)

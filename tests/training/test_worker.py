"""The database-backed task worker that `manage.py serve` runs in-process."""

from __future__ import annotations

import time

import pytest

from training import tasks
from training.management.commands.serve import start_inprocess_worker
from training.models import LanguageModel

DB_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "training"]}}


@pytest.mark.django_db(transaction=True)
def test_it_runs_queued_tasks_in_a_background_thread(settings, tiny_model_dir):
    settings.TASKS = DB_TASKS
    model = LanguageModel.objects.create(
        name="tiny", is_student=True, source=str(tiny_model_dir), max_new_tokens=4
    )
    result = tasks.try_language_model.enqueue(model.pk)
    assert not result.is_finished  # queued in the database, nothing ran it yet

    worker, thread = start_inprocess_worker(interval=0.1)
    try:
        deadline = time.monotonic() + 60
        while not result.is_finished and time.monotonic() < deadline:
            time.sleep(0.2)
            result.refresh()
    finally:
        worker.running = False
        thread.join(timeout=10)

    assert result.status == "SUCCESSFUL"
    model.refresh_from_db()
    assert model.last_try_output and not model.last_try_error
    assert not thread.is_alive()


class _FlakyWorker:
    """Stands in for django-tasks-db's Worker: its loop dies on a database error ``failures`` times."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.runs, self.running = failures, error, 0, True

    def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error


@pytest.mark.django_db
def test_a_worker_outlives_a_database_restart(monkeypatch):
    from django.db import OperationalError

    from training.management.commands import worker as command

    waits: list[float] = []
    monkeypatch.setattr(command.time, "sleep", waits.append)
    flaky = _FlakyWorker(3, OperationalError("terminating connection due to administrator command"))
    command.run_through_outages(flaky, first_wait_s=1, longest_wait_s=3)  # type: ignore[arg-type]
    assert flaky.runs == 4  # back to taking tasks after each of the three errors
    assert waits == [1, 2, 3]  # waiting longer each time, up to the longest wait


@pytest.mark.django_db
def test_a_stopping_worker_does_not_retry_and_other_errors_are_not_hidden(monkeypatch):
    from django.db import OperationalError

    from training.management.commands import worker as command

    monkeypatch.setattr(command.time, "sleep", lambda s: None)
    stopping = _FlakyWorker(1, OperationalError("gone"))
    stopping.running = False
    with pytest.raises(OperationalError):
        command.run_through_outages(stopping)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        command.run_through_outages(_FlakyWorker(1, ValueError("a bug")))  # type: ignore[arg-type]

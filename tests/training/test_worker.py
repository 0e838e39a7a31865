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

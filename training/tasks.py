"""Background tasks (run by the database-backed worker; see ``manage.py serve`` / ``db_worker``)."""

from __future__ import annotations

from django_tasks import task

from training import services
from training.models import LanguageModel


@task()
def try_language_model(model_id: int) -> dict[str, str]:
    """Generate a short sample with a registered model and store it on the row."""
    model = services.language_model_try(model=LanguageModel.objects.get(pk=model_id))
    return {"output": model.last_try_output, "error": model.last_try_error}

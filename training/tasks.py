"""Background tasks (run by the database-backed worker; see ``manage.py serve`` / ``worker``)."""

from __future__ import annotations

from django_tasks import task

from training import services
from training.models import LanguageModel


@task()
def try_language_model(model_id: int) -> dict[str, str]:
    """Generate a short sample with a registered model and store it on the row."""
    model = services.language_model_try(model=LanguageModel.objects.get(pk=model_id))
    return {"output": model.last_try_output, "error": model.last_try_error}


@task(queue_name="training")
def run_training_job(job_id: int) -> str:
    """Run one training job (claimed atomically; a duplicate delivery is skipped)."""
    from training.jobs import training_job_run

    return training_job_run(job_id=job_id)


@task(queue_name="training")
def run_adapter_merge(merge_id: int) -> str:
    """Merge an adapter into its base model (claimed atomically; a duplicate delivery is skipped).

    On the training queue: like training, it loads a whole model (in float32, on the CPU)."""
    from training.shipping import adapter_merge_run

    return adapter_merge_run(merge_id=merge_id)

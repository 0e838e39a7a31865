import os
import sys

from django.apps import AppConfig


def _recover_training_jobs() -> list[int]:
    from training.jobs import training_jobs_recover  # imported when first needed, not at start-up

    return training_jobs_recover()


def _recover_adapter_merges() -> list[int]:
    from training.shipping import adapter_merges_recover

    return adapter_merges_recover()


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Models and training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from training import recovery

        threads = settings.TEACHLOOP_TORCH_THREADS
        if threads:
            # torch's OpenMP pool reads it when torch is first imported, usually later than this;
            # a torch imported earlier (a test runner, a notebook) is set directly.
            os.environ["OMP_NUM_THREADS"] = str(threads)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)

        recovery.register("training jobs", _recover_training_jobs)
        recovery.register("adapter merges", _recover_adapter_merges)

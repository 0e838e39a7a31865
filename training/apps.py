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
        from training import recovery

        recovery.register("training jobs", _recover_training_jobs)
        recovery.register("adapter merges", _recover_adapter_merges)

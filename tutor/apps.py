from django.apps import AppConfig


def _recover_teaching_runs() -> list[int]:
    from tutor.runs.services import teaching_runs_recover  # imported when first needed, not at start-up

    return teaching_runs_recover()


def _recover_evaluations() -> list[int]:
    from tutor.evals.services import evaluations_recover

    return evaluations_recover()


class TutorConfig(AppConfig):
    name = "tutor"
    verbose_name = "Tutoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from training import recovery

        # Teaching runs whose worker died are re-queued by the workers' recovery loop.
        recovery.register("teaching runs", _recover_teaching_runs)
        recovery.register("evaluations", _recover_evaluations)

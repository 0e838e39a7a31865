"""Teaching-run services: the plain-Python loop (tutor/core/teaching) wired to the registry,
the course tables and the training app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from training import jobs as training_jobs
from training.models import Adapter, LanguageModel, TrainingJob
from training.services import language_model_llm
from tutor.core.teaching.loop import run_teaching
from tutor.core.teaching.state import RunConfig, RunState, TeachingError
from tutor.models import Course, TeachingRun
from tutor.services import course_to_core

Progress = Callable[[str, int, dict[str, Any]], None]


def teaching_run_create(*, course: Course, student: LanguageModel, teacher: LanguageModel, user=None,
                        train: dict[str, Any] | None = None, **config: Any) -> TeachingRun:
    if student.backend == LanguageModel.Backend.OPENAI:
        raise ValidationError(f"{student.name} is served over HTTP; a student must be a local model "
                              "(its LoRA adapters are trained and loaded here).")
    try:
        run_config = RunConfig(**config)
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc)) from exc
    from dataclasses import asdict

    return TeachingRun.objects.create(course=course, student=student, teacher=teacher, config=asdict(run_config),
                                      train_config=train or {}, created_by=user)


def state_path(run: TeachingRun) -> Path:
    return Path(settings.TEACHLOOP_DATA_DIR) / "runs" / str(run.pk) / "state.json"


def teaching_run_execute(*, run: TeachingRun, progress: Progress | None = None) -> RunState | None:
    """Run (or resume, from the last finished step) a teaching run in this process."""
    TeachingRun.objects.filter(pk=run.pk).update(status=TeachingRun.Status.RUNNING, last_error="",
                                                 started_at=run.started_at or timezone.now())

    def on_progress(step: str, round_index: int, info: dict[str, Any]) -> None:
        TeachingRun.objects.filter(pk=run.pk).update(current_round=round_index, current_step=step)
        if progress is not None:
            progress(step, round_index, info)

    def should_stop() -> bool:
        return TeachingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

    try:
        state = run_teaching(course_to_core(course=run.course), language_model_llm(model=run.teacher),
                             language_model_llm(model=run.student), RunConfig(**run.config), state_path(run),
                             train_fn=_train_fn(run), progress=on_progress, should_stop=should_stop)
    except (TeachingError, ValidationError) as exc:
        _finish(run, TeachingRun.Status.FAILED, error=str(exc))
        return None
    finished = len(state.rounds) == state.config.rounds and all(
        "reexamine" in r.done_steps for r in state.rounds)
    _finish(run, TeachingRun.Status.SUCCEEDED if finished else TeachingRun.Status.CANCELLED, state=state)
    return state


def _train_fn(run: TeachingRun):
    def train(records: list[dict[str, Any]], round_index: int, parent_adapter: str | None) -> str | None:
        if not records or run.train_config.get("disabled"):
            return None  # nothing that helped this round: the student keeps its adapter
        dataset = training_jobs.dataset_create(name=f"run {run.pk} round {round_index}", method="sft",
                                               records=records, source=f"teaching run {run.pk}")
        parent = Adapter.objects.filter(path=parent_adapter).first() if parent_adapter else None
        hyper = {k: v for k, v in run.train_config.items() if k != "disabled"}
        job = training_jobs.training_job_create(base_model=run.student, dataset=dataset, parent_adapter=parent,
                                                user=run.created_by, enqueue=False, **hyper)
        status = training_jobs.training_job_run(job_id=job.pk)
        job.refresh_from_db()
        if status != TrainingJob.Status.SUCCEEDED or job.adapter is None:
            raise TeachingError(f"round {round_index}: training job {job.pk} {status}: {job.last_error}")
        return job.adapter.path

    return train


def round_summaries(state: RunState) -> list[dict[str, Any]]:
    """Per round: probe accuracy and exam accuracy per skill (with the base), warnings."""
    return [{"round": r.index, "probe": r.probe_accuracy, "exam": r.exam.get("per_skill", {}),
             "base": r.exam.get("base_per_skill", {}), "accuracy": r.exam.get("accuracy"),
             "base_accuracy": r.exam.get("base_accuracy"), "agreement": r.exam.get("agreement"),
             "dropped_explanations": r.dropped_explanations, "warnings": r.warnings} for r in state.rounds]


def _finish(run: TeachingRun, status: str, *, error: str = "", state: RunState | None = None) -> None:
    fields: dict[str, Any] = {"status": status, "last_error": error, "finished_at": timezone.now()}
    if state is not None:
        fields["results"] = round_summaries(state)
        fields["adapter_path"] = state.adapter_path or ""
    TeachingRun.objects.filter(pk=run.pk).update(**fields)

"""Teaching-run services: the plain-Python loop (tutor/core/runs) wired to the registry,
the course tables and the training app.

Rules that matter:
- the run's JSON state file is the loop's memory (resumable from the last finished step); the
  ``TeachingRun`` row holds what pages need (status, step), ``Round`` rows mirror the per-round
  results (:func:`teaching_run_rounds_sync`) and ``RunExplanation`` rows the explanations
  (:func:`teaching_run_explanations_sync`), both synced after every finished step (idempotent); the
  explanations also hold people's ratings and edits, which only people write and the loop reads
  before each step;
- a run started from the web is run by a worker task (:func:`teaching_run_work`) on the
  ``training`` queue: claimed atomically with a lease, kept alive by heartbeats, and re-queued to
  resume (or failed once its attempts are used) when its worker dies (:func:`teaching_runs_recover`,
  called by the workers' recovery loop), the way training jobs are;
- each round's training job runs inside the run's task (it needs the same machine) and is
  remembered on its ``Round`` row, so a resumed run reuses a finished job's adapter or resumes the
  job from its checkpoint instead of training again;
- ``manage.py teach`` runs a run in its own process (:func:`teaching_run_take`), never one that
  another live process holds;
- every change is pushed to the run's page (:func:`~tutor.runs.live.teaching_run_broadcast`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from training import jobs as training_jobs
from training.core.config import TrainConfig
from training.core.datasets import DatasetError
from training.core.errors import first_line
from training.core.fields import setting_default
from training.models import Adapter, LanguageModel, TrainingDataset, TrainingJob
from training.recovery import (
    DATABASE_UNAVAILABLE,
    claim,
    drop_broken_connection,
    keep_alive,
    recover_stale,
    stale_cutoff,
    worker_id,
)
from training.services import language_model_llm
from tutor.core.courses.course import ExamLeakError
from tutor.core.runs.guard import ExamGuard
from tutor.core.runs.loop import run_teaching
from tutor.core.runs.state import RunConfig, RunState, TeachingError
from tutor.core.runs.steps import feedback_records
from tutor.core.runs.summary import round_summaries
from tutor.courses.services import course_to_core
from tutor.models import Course, Exercise, Round, RunExplanation, TeachingRun
from tutor.runs.live import teaching_run_broadcast
from tutor.runs.selectors import (
    run_explanation_to_core,
    teaching_run_latest_adapter,
    teaching_run_state_load,
    teaching_run_state_path,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, dict[str, Any]], None]
MAX_EDIT_CHARS = 8000


def teaching_run_create(
    *,
    course: Course,
    student: LanguageModel,
    teacher: LanguageModel,
    user=None,
    train: dict[str, Any] | None = None,
    enqueue: bool = False,
    **config: Any,
) -> TeachingRun:
    """Validate the settings and create the run; with ``enqueue`` a worker starts it once the
    transaction commits (the CLI runs it in its own process instead)."""
    if student.backend == LanguageModel.Backend.OPENAI:
        raise ValidationError(
            f"{student.name} is served over HTTP; a student must be a local model "
            "(its LoRA adapters are trained and loaded here)."
        )
    try:
        run_config = RunConfig(**config)
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc)) from exc
    with transaction.atomic():
        run = TeachingRun.objects.create(
            course=course,
            student=student,
            teacher=teacher,
            config=asdict(run_config),
            train_config=train or {},
            created_by=user,
        )
        if enqueue:
            transaction.on_commit(lambda: teaching_run_enqueue(run=run))
    return run


def teaching_run_enqueue(*, run: TeachingRun) -> None:
    from tutor.runs.tasks import run_teaching_run

    # The training queue: a run generates with the student and trains it, so it belongs on the
    # machines (one worker per GPU) that take training jobs.
    run_teaching_run.using(queue_name="training").enqueue(run.pk)


# --- controlling a run ------------------------------------------------------------------


def teaching_run_cancel(*, run: TeachingRun) -> TeachingRun:
    """A queued run is cancelled at once; a running one stops before its next step (and its
    current training job, if any, at its next training step)."""
    with transaction.atomic():
        run = TeachingRun.objects.select_for_update().get(pk=run.pk)
        if run.status == TeachingRun.Status.QUEUED:
            run.status, run.finished_at = TeachingRun.Status.CANCELLED, timezone.now()
            run.save(update_fields=["status", "finished_at"])
        elif run.status == TeachingRun.Status.RUNNING:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested"])
    if run.status == TeachingRun.Status.RUNNING:
        for job in TrainingJob.objects.filter(teaching_rounds__run=run, status=TrainingJob.Status.RUNNING):
            training_jobs.training_job_cancel(job=job)
    teaching_run_broadcast(run)
    return run


def teaching_run_resume(*, run: TeachingRun, extra_rounds: int = 0) -> TeachingRun:
    """Queue a failed or cancelled run again (or a finished one with ``extra_rounds`` more rounds);
    it continues from its last finished step, so no teacher call is paid for twice, and reads the
    ratings and edits people made since."""
    with transaction.atomic():
        run = TeachingRun.objects.select_for_update().get(pk=run.pk)
        resumable = (TeachingRun.Status.FAILED, TeachingRun.Status.CANCELLED)
        if not (run.status in resumable or (run.status == TeachingRun.Status.SUCCEEDED and extra_rounds > 0)):
            raise ValidationError(
                f"run {run.pk} is {run.status}; only a failed or cancelled run can be resumed, "
                "and a finished one only with more rounds"
            )
        if extra_rounds:
            run.config = {**run.config, "rounds": run.config["rounds"] + extra_rounds}
        run.status, run.cancel_requested, run.last_error, run.finished_at = (
            TeachingRun.Status.QUEUED,
            False,
            "",
            None,
        )
        run.max_attempts = run.attempts + max(1, run.max_attempts - run.attempts)
        run.save()
        transaction.on_commit(lambda: teaching_run_enqueue(run=run))
    teaching_run_broadcast(run)
    return run


def teaching_run_take(*, run_id: int, rounds: int | None = None) -> TeachingRun:
    """Take a run to run (or resume) in this process, as ``manage.py teach`` does; ``rounds`` (the
    new total) extends it. Atomic: a worker's claim skips a taken run, and recovery a fresh heartbeat.

    Refused (ValidationError) while another process holds it (running or queued, with a heartbeat
    younger than :func:`stale_cutoff`: two processes would write one state file), when it is finished
    and ``rounds`` adds none, and when ``rounds`` is fewer than it has. A run whose process stopped
    sending heartbeats is taken over: its lease is cleared, so a late attempt of it stops before its
    next step and writes nothing.
    """
    with transaction.atomic():
        run = TeachingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise ValidationError(f"no teaching run {run_id}")
        planned = run.config["rounds"]
        held = run.status in (TeachingRun.Status.RUNNING, TeachingRun.Status.QUEUED)
        if held and run.heartbeat_at is not None and run.heartbeat_at >= stale_cutoff():
            seconds = (timezone.now() - run.heartbeat_at).total_seconds()
            raise ValidationError(
                f"run {run.pk} is {run.status} on {run.worker or 'another process'} "
                f"(last heartbeat {seconds:.0f}s ago); cancel it on its page "
                f"({reverse('runs:detail', args=[run.pk])}) or in the admin, then "
                f"resume it here once it has stopped"
            )
        if rounds is not None and rounds < planned:
            raise ValidationError(
                f"run {run.pk} has {planned} rounds; --rounds can only add rounds (at least {planned + 1})"
            )
        if run.status == TeachingRun.Status.SUCCEEDED and (rounds or planned) == planned:
            raise ValidationError(
                f"run {run.pk} is finished ({planned} rounds, adapter "
                f"{run.adapter_path or 'none'}); continue it with more rounds: "
                f"--resume {run.pk} --rounds {planned + 1}"
            )
        if rounds is not None:
            run.config = {**run.config, "rounds": rounds}
        run.status, run.cancel_requested, run.lease, run.worker = (
            TeachingRun.Status.RUNNING,
            False,
            "",
            worker_id(),
        )
        run.heartbeat_at, run.started_at = timezone.now(), run.started_at or timezone.now()
        run.last_error, run.finished_at = "", None
        run.save()
    teaching_run_broadcast(run)
    return run


def teaching_runs_recover(*, stale_after_s: float | None = None) -> list[int]:
    """Re-queue (or fail) running runs whose worker stopped sending heartbeats.

    The round's training job ran in the same dead process: it is failed here (never re-queued on
    its own), and the resumed run resumes it from its checkpoint. A run without a lease was run by
    ``manage.py teach``, not a worker: it is failed (resume it), never given to a worker.
    """

    def settle(run: TeachingRun, since: str) -> None:
        who = f"worker {run.worker}" if run.lease else "the process running it (manage.py teach?)"
        lost = f"{who} stopped responding ({since})"
        TrainingJob.objects.filter(teaching_rounds__run=run, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.FAILED,
            lease="",
            finished_at=timezone.now(),
            last_error=f"{lost}; its teaching run {run.pk} resumes it",
        )
        if run.cancel_requested:
            run.status, run.finished_at = TeachingRun.Status.CANCELLED, timezone.now()
        elif not run.lease:
            run.status, run.finished_at = TeachingRun.Status.FAILED, timezone.now()
            run.last_error = f"{lost}; resume it to go on"
        elif run.attempts >= run.max_attempts:
            run.status, run.finished_at = TeachingRun.Status.FAILED, timezone.now()
            run.last_error = f"{lost}; gave up after {run.attempts} attempts (resume it to try again)"
        else:
            run.status, run.last_error = TeachingRun.Status.QUEUED, f"{lost}; re-queued to resume"
            transaction.on_commit(lambda: teaching_run_enqueue(run=run))

    return recover_stale(
        TeachingRun, stale_after_s=stale_after_s, settle=settle, broadcast=teaching_run_broadcast
    )


# --- running ------------------------------------------------------------------------------


def teaching_run_claim(*, run_id: int) -> tuple[TeachingRun, str] | None:
    """Atomically take a queued run; None when it is not queued (already taken or cancelled)."""
    return claim(TeachingRun, run_id)


def teaching_run_work(*, run_id: int) -> str:
    """The worker's side: claim the run, keep it alive, run it; returns the final status."""
    claimed = teaching_run_claim(run_id=run_id)
    if claimed is None:
        return "skipped"
    run, lease = claimed
    teaching_run_broadcast(run)
    # An error is recorded on the run by teaching_run_execute; the worker goes on.
    with contextlib.suppress(Exception):
        teaching_run_execute(run=run, lease=lease)
    return TeachingRun.objects.filter(pk=run.pk).values_list("status", flat=True).first() or "gone"


def teaching_run_execute(
    *, run: TeachingRun, progress: Progress | None = None, lease: str | None = None
) -> RunState | None:
    """Run (or resume, from the last finished step) a teaching run in this process.

    With ``lease`` (a worker's attempt), every write checks it, and an attempt that lost it (its
    run was recovered and given to another worker) stops before its next step and writes nothing.
    Either way the run sends heartbeats while it runs, and an unexpected exception (or Ctrl-C in
    ``manage.py teach``) is recorded on the run, failed (cancelled), before it propagates: a run
    never stays "running" after the process running it stopped.
    """
    mine = TeachingRun.objects.filter(pk=run.pk, **({"lease": lease} if lease else {}))
    mine.update(
        status=TeachingRun.Status.RUNNING,
        last_error="",
        started_at=run.started_at or timezone.now(),
        heartbeat_at=timezone.now(),
    )
    lost = threading.Event()

    def on_progress(step: str, round_index: int, info: dict[str, Any]) -> None:
        try:
            record_progress(step, round_index, info)
        except DATABASE_UNAVAILABLE as exc:  # the page misses this step; the next one writes again
            logger.warning("teaching run %s: progress not recorded (%s)", run.pk, first_line(exc))
            drop_broken_connection()
        if progress is not None and not lost.is_set():  # an attempt that lost the run says nothing more
            progress(step, round_index, info)

    def record_progress(step: str, round_index: int, info: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"current_round": round_index, "current_step": step}
        if lease:
            fields["heartbeat_at"] = timezone.now()
        if not mine.update(**fields):
            lost.set()
            return
        if info.get("status") == "done":  # only while this attempt owns the run (checked just above)
            state = teaching_run_state_load(run)
            if state is not None:
                teaching_run_rounds_sync(run=run, state=state)
                teaching_run_explanations_sync(run=run, state=state)
        teaching_run_broadcast(TeachingRun.objects.get(pk=run.pk))

    def should_stop() -> bool:
        try:
            row = TeachingRun.objects.filter(pk=run.pk).values("cancel_requested", "lease").first()
        except DATABASE_UNAVAILABLE:
            drop_broken_connection()
            return False  # cannot tell; the next step asks again
        if row is None or (lease and row["lease"] != lease):
            lost.set()
            return True
        return bool(row["cancel_requested"])

    def ratings() -> dict[str, bool | None]:
        return dict(RunExplanation.objects.filter(run_id=run.pk).values_list("key", "rating"))

    def edits() -> dict[str, str | None]:
        return {
            key: text or None
            for key, text in RunExplanation.objects.filter(run_id=run.pk).values_list("key", "edited_text")
        }

    stop = threading.Event()
    threading.Thread(
        target=keep_alive,
        args=(TeachingRun.objects.filter(pk=run.pk, lease=lease or ""),),
        kwargs={
            "every_s": settings.TEACHLOOP_JOB_HEARTBEAT_S,
            "stop": stop,
            "what": f"teaching run {run.pk}",
        },
        daemon=True,
        name=f"run-heartbeat-{run.pk}",
    ).start()
    try:
        config = RunConfig.from_dict(run.config)  # a run saved before a setting existed keeps its old rule
        state = run_teaching(
            course_to_core(course=run.course),
            language_model_llm(model=run.teacher),
            language_model_llm(model=run.student),
            config,
            teaching_run_state_path(run),
            train_fn=_train_fn(run),
            progress=on_progress,
            should_stop=should_stop,
            ratings=ratings,
            edits=edits,
        )
    except (TeachingError, ValidationError) as exc:
        if not lost.is_set():
            _finish(run, _stopped_or(run, TeachingRun.Status.FAILED), error=str(exc), lease=lease)
        return None
    except KeyboardInterrupt:
        _finish(run, TeachingRun.Status.CANCELLED, error="interrupted; resume it to go on", lease=lease)
        raise
    except DATABASE_UNAVAILABLE as exc:
        drop_broken_connection()
        if lease:  # a worker's run: left running without a heartbeat, recovery resumes it
            logger.warning(
                "teaching run %s interrupted, the database is unavailable (%s); recovery will resume it",
                run.pk,
                first_line(exc),
            )
            return None
        logger.exception("teaching run %s interrupted: the database is unavailable", run.pk)
        raise
    except Exception as exc:
        logger.exception("teaching run %s crashed", run.pk)
        if not lost.is_set():
            _finish(
                run,
                _stopped_or(run, TeachingRun.Status.FAILED),
                error=f"{type(exc).__name__}: {exc}",
                lease=lease,
            )
        raise
    finally:
        stop.set()
    if lost.is_set():
        return state
    finished = len(state.rounds) == state.config.rounds and all(
        "reexamine" in r.done_steps for r in state.rounds
    )
    _finish(
        run,
        TeachingRun.Status.SUCCEEDED if finished else TeachingRun.Status.CANCELLED,
        state=state,
        lease=lease,
    )
    return state


def _stopped_or(run: TeachingRun, status: str) -> str:
    """Cancelled when someone asked for it (a cancelled training job ends its round with an error)."""
    asked = TeachingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()
    return TeachingRun.Status.CANCELLED if asked else status


def _train_fn(run: TeachingRun):
    def train(
        records: list[dict[str, Any]],
        round_index: int,
        parent_adapter: str | None,
        *,
        attempt: int = 0,
        lr_scale: float = 1.0,
    ) -> str | None:
        if not records or run.train_config.get("disabled"):
            return None  # nothing that helped this round: the student keeps its adapter
        job = _round_job(run, round_index, attempt, records, parent_adapter, lr_scale)
        if job.status == TrainingJob.Status.SUCCEEDED and job.adapter is not None:
            return job.adapter.path  # trained before an interruption: not again
        status = training_jobs.training_job_run(job_id=job.pk)
        job.refresh_from_db()
        if status != TrainingJob.Status.SUCCEEDED or job.adapter is None:
            raise TeachingError(f"round {round_index}: training job {job.pk} {status}: {job.last_error}")
        return job.adapter.path

    return train


def _round_job(
    run: TeachingRun,
    round_index: int,
    attempt: int,
    records: list[dict[str, Any]],
    parent_adapter: str | None,
    lr_scale: float,
) -> TrainingJob:
    """The training job of this try of the round: the one made before an interruption (made runnable
    again), or a new one."""
    row = Round.objects.filter(run=run, index=round_index).first()
    known = (
        (row.job_tries.get(str(attempt)) or (row.training_job_id if attempt == 0 else None)) if row else None
    )
    job = TrainingJob.objects.select_related("adapter").filter(pk=known).first() if known else None
    if job is not None and job.status in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED):
        # Resume from its checkpoint in this process (training_job_run claims a queued job).
        TrainingJob.objects.filter(pk=job.pk).update(
            status=TrainingJob.Status.QUEUED,
            cancel_requested=False,
            last_error="",
            finished_at=None,
            max_attempts=F("attempts") + 1,
        )
        job.refresh_from_db()
    if job is not None:
        return job
    dataset = training_jobs.dataset_create(
        name=f"run {run.pk} round {round_index}" + (f" try {attempt + 1}" if attempt else ""),
        method="sft",
        records=records,
        source=f"teaching run {run.pk}",
    )
    parent = Adapter.objects.filter(path=parent_adapter).first() if parent_adapter else None
    hyper = {k: v for k, v in run.train_config.items() if k != "disabled"}
    if lr_scale != 1.0:  # a retry after a rejected try learns more gently
        hyper["learning_rate"] = (
            hyper.get("learning_rate", setting_default(TrainConfig, "learning_rate")) * lr_scale
        )
    job = training_jobs.training_job_create(
        base_model=run.student,
        dataset=dataset,
        parent_adapter=parent,
        user=run.created_by,
        enqueue=False,
        **hyper,
    )
    # The run owns its job's retries: the training recovery must not queue it on its own.
    TrainingJob.objects.filter(pk=job.pk).update(max_attempts=1)
    # Linked before it trains: a resumed run finds it (its row's summary comes with the next sync).
    with transaction.atomic():
        row, _ = Round.objects.select_for_update().get_or_create(run=run, index=round_index)
        row.training_job, row.job_tries = job, {**row.job_tries, str(attempt): job.pk}
        row.save(update_fields=["training_job", "job_tries"])
    return job


def _finish(
    run: TeachingRun, status: str, *, error: str = "", state: RunState | None = None, lease: str | None = None
) -> None:
    fields: dict[str, Any] = {
        "status": status,
        "last_error": error,
        "finished_at": timezone.now(),
        "lease": "",
    }
    if state is not None:
        fields["adapter_path"] = state.adapter_path or ""
        teaching_run_rounds_sync(run=run, state=state)
        teaching_run_explanations_sync(run=run, state=state)
    TeachingRun.objects.filter(pk=run.pk, **({"lease": lease} if lease else {})).update(**fields)
    teaching_run_broadcast(TeachingRun.objects.get(pk=run.pk))


# Round fields a sync writes; the summary's keys have the same names (its "round" is ``index``).
ROUND_FIELDS = tuple(
    f.name
    for f in Round._meta.concrete_fields
    if f.name not in ("id", "run", "index", "training_job", "job_tries", "extra")
)


@transaction.atomic
def teaching_run_rounds_sync(*, run: TeachingRun, state: RunState) -> int:
    """Mirror the state's rounds into ``Round`` rows (create or update; the training job link is
    left alone: :func:`_round_job` sets it). A summary key without a column goes to ``extra``.
    Idempotent; returns how many rows were created or changed."""
    existing = {row.index: row for row in Round.objects.filter(run=run)}
    create, update = [], []
    for summary in round_summaries(state):
        rest = dict(summary)
        index = rest.pop("round")
        values: dict[str, Any] = {}
        for name in ROUND_FIELDS:
            field, value = Round._meta.get_field(name), rest.pop(name, None)
            values[name] = field.get_default() if value is None and not field.null else value
        values["extra"] = rest
        _stage(existing.get(index), values, partial(Round, run=run, index=index, **values), create, update)
    Round.objects.bulk_create(create)
    if update:
        Round.objects.bulk_update(update, [*ROUND_FIELDS, "extra"])
    return len(create) + len(update)


def _stage(row, values: dict[str, Any], make: Callable[[], Any], create: list, update: list) -> None:
    """Queue a missing row (``make()``) for a bulk create, or an existing one whose fields differ from
    ``values`` (set on it) for a bulk update; a row already equal to ``values`` is left alone."""
    if row is None:
        create.append(make())
    elif any(getattr(row, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(row, k, v)
        update.append(row)


# --- explanations, people's feedback --------------------------------------------------------

STATE_FIELDS = (
    "round",
    "item",
    "skill",
    "split",
    "question",
    "gold_answer",
    "student_answer",
    "answer_after",
    "text",
    "teacher_answer",
    "passed_gate",
    "gate_reason",
    "quotes_exam",
    "before",
    "after",
    "siblings",
    "score",
    "source",
    "model_text",
    "candidates",
    "candidates_passed",
)


def teaching_run_explanations_sync(*, run: TeachingRun, state: RunState) -> int:
    """Mirror the state's explanations into ``RunExplanation`` rows (create or update; ratings and
    edits untouched). Idempotent; returns how many rows were created or changed."""
    items = {
        (skill, key): (prompt, answer)
        for skill, key, prompt, answer in Exercise.objects.filter(skill__course_id=run.course_id).values_list(
            "skill__key", "key", "prompt", "answer"
        )
    }
    existing = {row.key: row for row in RunExplanation.objects.filter(run=run)}
    create, update = [], []
    for x in (x for r in state.rounds for x in r.explanations):
        question, gold = items.get((x.skill, x.item), ("", ""))
        values = {
            "round": x.round,
            "item": x.item,
            "skill": x.skill,
            "split": x.split,
            "question": question,
            "gold_answer": gold,
            "student_answer": x.student_answer,
            "answer_after": x.answer_after,
            "text": x.text,
            "teacher_answer": x.teacher_answer or "",
            "passed_gate": x.passed_gate,
            "gate_reason": x.gate_reason,
            "quotes_exam": x.quotes_exam,
            "before": x.before,
            "after": x.after,
            "siblings": x.siblings,
            "score": x.score,
            "source": x.source,
            "model_text": x.model_text,
            "candidates": x.candidates,
            "candidates_passed": x.candidates_passed,
        }
        _stage(
            existing.get(x.id), values, partial(RunExplanation, run=run, key=x.id, **values), create, update
        )
    RunExplanation.objects.bulk_create(create)
    if update:
        RunExplanation.objects.bulk_update(update, STATE_FIELDS)
    return len(create) + len(update)


def run_explanation_rate(*, explanation: RunExplanation, rating: bool | None, user) -> RunExplanation:
    """A thumbs up (True), down (False) or no rating (None); a running run reads it before its next step."""
    explanation.rating, explanation.rated_by, explanation.rated_at = rating, user, timezone.now()
    explanation.save(update_fields=["rating", "rated_by", "rated_at"])
    return explanation


def run_explanation_edit(*, explanation: RunExplanation, text: str, user) -> RunExplanation:
    """Save a person's rewrite (empty: back to the teacher's text). Saving an edit approves the
    explanation: the person vouches for the text they wrote. An edit may not quote an exam question."""
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_EDIT_CHARS:
        raise ValidationError(f"An explanation may be at most {MAX_EDIT_CHARS} characters.")
    if text:
        copy = ExamGuard(course_to_core(course=explanation.run.course)).exam_copy(text)
        if copy:
            raise ValidationError(
                f"The text quotes an exam question ({copy!r}); exam items never reach training."
            )
    explanation.edited_text = text
    fields = ["edited_text"]
    if text:
        explanation.rating, explanation.rated_by, explanation.rated_at = True, user, timezone.now()
        fields += ["rating", "rated_by", "rated_at"]
    explanation.save(update_fields=fields)
    return explanation


def teaching_run_feedback_fine_tune(
    *, run: TeachingRun, user=None
) -> tuple[TrainingJob, TrainingDataset | None]:
    """ "Fine-tune now on approved feedback": an SFT job on the approved (or edited) explanations,
    continuing from the run's latest adapter, queued for a worker. Preference pairs (approved over
    rejected, same item) are saved as a DPO dataset beside it when there are any."""
    rows = list(RunExplanation.objects.filter(run=run))
    try:
        sft, pairs = feedback_records(
            course_to_core(course=run.course), [run_explanation_to_core(r) for r in rows]
        )
    except ExamLeakError as exc:
        raise ValidationError(str(exc)) from exc
    if not sft:
        raise ValidationError(
            "No approved explanations yet: give a thumbs up to (or edit) the ones worth learning from first."
        )
    hyper = {k: v for k, v in run.train_config.items() if k != "disabled"}
    try:
        with transaction.atomic():
            dataset = training_jobs.dataset_create(
                name=f"run {run.pk} feedback",
                method="sft",
                records=sft,
                user=user,
                source=f"teaching run {run.pk} feedback",
            )
            preferences = (
                training_jobs.dataset_create(
                    name=f"run {run.pk} feedback pairs",
                    method="dpo",
                    records=pairs,
                    user=user,
                    source=f"teaching run {run.pk} feedback",
                )
                if pairs
                else None
            )
            job = training_jobs.training_job_create(
                base_model=run.student,
                dataset=dataset,
                user=user,
                parent_adapter=teaching_run_latest_adapter(run=run),
                **hyper,
            )
            # Read under a row lock: two "Fine-tune now" at once must both be recorded.
            locked = TeachingRun.objects.select_for_update().only("feedback_jobs").get(pk=run.pk)
            jobs = [*locked.feedback_jobs, job.pk]
            TeachingRun.objects.filter(pk=run.pk).update(feedback_jobs=jobs)
    except DatasetError as exc:
        raise ValidationError(str(exc)) from exc
    run.feedback_jobs = jobs
    return job, preferences

"""Evaluation services: make, queue, run, cancel and recover stored evaluations.

Rules that matter:
- an evaluation is checked when made (:func:`evaluation_create`): a student served over HTTP, an
  adapter of another base model or without its folder, a course without items in the split, an
  empty or broken uploaded file are refused with a clear message, and nothing is queued;
- its items are frozen when it is made, so a re-imported course never changes a stored result;
- it runs in a worker on the ``training`` queue (it needs the student, as training does), claimed
  with a lease and kept alive by heartbeats like a training job; a dead worker's evaluation is
  re-queued (or failed once its attempts are used up) by the recovery loop;
- a column another succeeded evaluation already answered (same student, adapter folder, items,
  token limit and grading: its ``key``) is copied from it, never recomputed;
- every change is pushed to the evaluation's page (:func:`~tutor.evals.live.evaluation_broadcast`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from training.core.llm import LLMError
from training.models import Adapter, LanguageModel
from training.recovery import claim, keep_alive, recover_stale
from training.services import language_model_llm
from tutor.core.courses.course import Exercise
from tutor.core.courses.formats import CourseImportError, parse_items_jsonl
from tutor.core.runs import evaluation as core
from tutor.courses.services import course_to_core
from tutor.evals.live import evaluation_broadcast
from tutor.models import Course, Evaluation

logger = logging.getLogger(__name__)

MAX_ADAPTERS = 6
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD = "upload"


# --- making ---------------------------------------------------------------------------------


def evaluation_items(*, course: Course | None, split: str, upload: str | None = None) -> list[Exercise]:
    """The items an evaluation asks: a course's ``split`` (:data:`~tutor.core.runs.evaluation.SPLITS`),
    or with ``split="upload"`` the items of an uploaded JSONL file. Raises ``ValidationError``."""
    if split == UPLOAD:
        if not upload or not upload.strip():
            raise ValidationError(
                "The uploaded file is empty: one JSON object per line, with a prompt and an answer."
            )
        try:
            return list(parse_items_jsonl(upload))
        except CourseImportError as exc:
            raise ValidationError(f"The uploaded file has problems:\n{exc}") from exc
    if split not in core.SPLITS:
        raise ValidationError(f"Unknown split {split!r}: one of {', '.join([*core.SPLITS, UPLOAD])}.")
    if course is None:
        raise ValidationError("Choose a course (or upload held-out items).")
    items = core.select_items(course_to_core(course=course), split)
    if not items:
        raise ValidationError(f"Course {course.key} has no items in {core.SPLITS[split]}.")
    return items


def _check_student(student: LanguageModel, adapters: list[Adapter]) -> None:
    if student.backend == LanguageModel.Backend.OPENAI and adapters:
        raise ValidationError(
            f"{student.name} is served over HTTP: adapters are evaluated on local models (evaluate the "
            "served model alone, or register its base as a local model)."
        )
    for adapter in adapters:
        if adapter.base_model_id != student.pk:
            raise ValidationError(
                f"Adapter {adapter} was trained on {adapter.base_model.name}, not {student.name}."
            )
        if not (Path(adapter.path) / "adapter_config.json").is_file():
            raise ValidationError(
                f"Adapter {adapter}: no adapter folder at {adapter.path} (was it deleted?)."
            )


def _items_digest(items: list[Exercise]) -> str:
    blob = json.dumps([[e.key, e.prompt, e.answer, e.answer_type, list(e.options)] for e in items])
    return hashlib.sha256(blob.encode()).hexdigest()


def column_key(*, student: LanguageModel, path: str, items_digest: str, max_new_tokens: int) -> str:
    """What makes two columns the same answers: the student, the adapter folder, the items, the token
    limit and the grading rules."""
    spec = {
        "student": student.pk,
        "source": student.source,
        "adapter": path,
        "items": items_digest,
        "tokens": max_new_tokens,
        "grading": core.GRADING,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def evaluation_create(
    *,
    student: LanguageModel,
    adapters: list[Adapter],
    course: Course | None,
    split: str,
    upload: str | None = None,
    upload_name: str = "",
    max_new_tokens: int = 128,
    user=None,
) -> Evaluation:
    """Check, freeze and queue an evaluation of ``student`` and each adapter (the base first)."""
    if len(adapters) > MAX_ADAPTERS:
        raise ValidationError(f"At most {MAX_ADAPTERS} adapters at once.")
    if not 1 <= max_new_tokens <= 4096:
        raise ValidationError("Tokens per answer must be between 1 and 4096.")
    _check_student(student, adapters)
    items = evaluation_items(course=course if split != UPLOAD else None, split=split, upload=upload)
    digest = _items_digest(items)
    columns = [
        {"label": "base", "adapter": None, "path": ""},
        *({"label": f"v{a.version} (#{a.pk})", "adapter": a.pk, "path": a.path} for a in adapters),
    ]
    for column in columns:
        column["key"] = column_key(
            student=student, path=column["path"], items_digest=digest, max_new_tokens=max_new_tokens
        )
    source = (
        f"uploaded items ({upload_name or 'a file'}, {len(items)})"
        if split == UPLOAD
        else f"{course.key}: {core.SPLITS[split]}"  # type: ignore[union-attr]
    )
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            course=course if split != UPLOAD else None,
            student=student,
            split=split,
            source=source[:300],
            items=[{**asdict(e), "options": list(e.options)} for e in items],
            columns=columns,
            max_new_tokens=max_new_tokens,
            total=len(items) * len(columns),
            created_by=user,
        )
        evaluation.adapters.set(adapters)
        transaction.on_commit(lambda: evaluation_enqueue(evaluation=evaluation))
    return evaluation


def evaluation_enqueue(*, evaluation: Evaluation) -> None:
    from tutor.evals.tasks import run_evaluation

    run_evaluation.using(queue_name="training").enqueue(evaluation.pk)


def evaluation_cancel(*, evaluation: Evaluation) -> Evaluation:
    """A queued evaluation is cancelled at once; a running one stops after its current batch."""
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
        if evaluation.status == Evaluation.Status.QUEUED:
            evaluation.status, evaluation.finished_at = Evaluation.Status.CANCELLED, timezone.now()
            evaluation.save(update_fields=["status", "finished_at"])
        elif evaluation.status == Evaluation.Status.RUNNING:
            evaluation.cancel_requested = True
            evaluation.save(update_fields=["cancel_requested"])
    evaluation_broadcast(evaluation)
    return evaluation


def evaluations_recover(*, stale_after_s: float | None = None) -> list[int]:
    """Re-queue (or fail) running evaluations whose worker stopped sending heartbeats."""

    def settle(row: Evaluation, since: str) -> None:
        lost = f"worker {row.worker} stopped responding ({since})"
        if row.cancel_requested:
            row.status, row.finished_at = Evaluation.Status.CANCELLED, timezone.now()
        elif row.attempts >= row.max_attempts:
            row.status, row.finished_at = Evaluation.Status.FAILED, timezone.now()
            row.last_error = f"{lost}; gave up after {row.attempts} attempts"
        else:
            row.status, row.last_error = Evaluation.Status.QUEUED, f"{lost}; re-queued"
            transaction.on_commit(lambda: evaluation_enqueue(evaluation=row))

    return recover_stale(
        Evaluation, stale_after_s=stale_after_s, settle=settle, broadcast=evaluation_broadcast
    )


# --- running --------------------------------------------------------------------------------


class _Lost(Exception):
    """This attempt no longer owns the evaluation (recovered and given to another worker)."""


class _Cancelled(Exception):
    pass


def stored_column(*, student: LanguageModel, key: str) -> dict[str, dict[str, Any]] | None:
    """The answers (``{item: {correct, extracted, text}}``) of a column that a succeeded evaluation of
    ``student`` already has, else None."""
    done = Evaluation.objects.filter(status=Evaluation.Status.SUCCEEDED, student=student)
    for pk, columns in done.order_by("-finished_at").values_list("pk", "columns"):
        if any(c.get("key") == key for c in columns):
            results = Evaluation.objects.filter(pk=pk).values_list("results", flat=True).first() or {}
            stored = results.get("answers", {}).get(key)
            if stored is not None:
                return stored
    return None


def evaluation_work(*, evaluation_id: int) -> str:
    """The worker's side: claim the evaluation, keep it alive, answer every column; returns the final
    status ("skipped" when it was not queued)."""
    claimed = claim(Evaluation, evaluation_id)
    if claimed is None:
        return "skipped"
    evaluation, lease = claimed
    mine = Evaluation.objects.filter(pk=evaluation.pk, lease=lease)
    evaluation_broadcast(evaluation)
    stop = threading.Event()
    threading.Thread(
        target=keep_alive,
        args=(mine,),
        kwargs={
            "every_s": settings.TEACHLOOP_JOB_HEARTBEAT_S,
            "stop": stop,
            "what": f"evaluation {evaluation.pk}",
        },
        daemon=True,
        name=f"evaluation-heartbeat-{evaluation.pk}",
    ).start()
    try:
        results = _answer_columns(evaluation, lease)
    except _Lost:
        return "lost"
    except _Cancelled:
        _finish(evaluation, lease, Evaluation.Status.CANCELLED)
    except (LLMError, ValidationError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        _finish(evaluation, lease, Evaluation.Status.FAILED, error=message)
    except Exception as exc:
        logger.exception("evaluation %s crashed", evaluation.pk)
        _finish(evaluation, lease, Evaluation.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _finish(evaluation, lease, Evaluation.Status.SUCCEEDED, results=results)
    finally:
        stop.set()
    return Evaluation.objects.filter(pk=evaluation.pk).values_list("status", flat=True).first() or "gone"


def _answer_columns(evaluation: Evaluation, lease: str) -> dict[str, Any]:
    """Answer (or copy) every column, reporting progress after each batch; raises :class:`_Lost` when
    the lease is gone and :class:`_Cancelled` when someone cancelled."""
    mine = Evaluation.objects.filter(pk=evaluation.pk, lease=lease)
    items = [Exercise(**{**d, "options": tuple(d.get("options", []))}) for d in evaluation.items]
    student = evaluation.student
    adapters = {a.pk: a for a in evaluation.adapters.all()}
    _check_student(student, [adapters[c["adapter"]] for c in evaluation.columns if c["adapter"] in adapters])
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    right: dict[str, dict[str, bool]] = {}
    llm = None
    for index, column in enumerate(evaluation.columns):
        before = index * len(items)
        if not mine.update(current=column["label"], done=before, heartbeat_at=timezone.now()):
            raise _Lost
        evaluation_broadcast(Evaluation.objects.get(pk=evaluation.pk))
        stored = stored_column(student=student, key=column["key"])
        if stored is not None and set(stored) == {e.key for e in items}:
            answers[column["key"]] = stored
            right[column["label"]] = {k: bool(v["correct"]) for k, v in stored.items()}
            continue
        if llm is None:
            llm = language_model_llm(model=student)
        name = None
        if column["adapter"] is not None:
            name = f"eval-adapter-{column['adapter']}"
            llm.load_adapter(name, column["path"])

        def progress(done: int, before: int = before) -> None:
            row = Evaluation.objects.filter(pk=evaluation.pk).values("lease", "cancel_requested").first()
            if row is None or row["lease"] != lease:
                raise _Lost
            if row["cancel_requested"]:
                raise _Cancelled
            mine.update(done=before + done, heartbeat_at=timezone.now())
            evaluation_broadcast(Evaluation.objects.get(pk=evaluation.pk))

        graded = core.answers(
            llm, items, adapter=name, max_new_tokens=evaluation.max_new_tokens, progress=progress
        )
        answers[column["key"]] = {
            k: {"correct": a.correct, "extracted": a.extracted, "text": a.text[:2000]}
            for k, a in graded.items()
        }
        right[column["label"]] = {k: a.correct for k, a in graded.items()}
    return {**core.comparison(items, right), "answers": answers}


def _finish(
    evaluation: Evaluation, lease: str, status: str, *, error: str = "", results: dict[str, Any] | None = None
) -> None:
    """Record the end, only while this attempt still owns the evaluation."""
    fields: dict[str, Any] = {
        "status": status,
        "last_error": error,
        "finished_at": timezone.now(),
        "lease": "",
    }
    if results is not None:
        fields["results"] = results
        fields["done"] = evaluation.total
        fields["current"] = ""
    if Evaluation.objects.filter(pk=evaluation.pk, lease=lease).update(**fields):
        evaluation_broadcast(Evaluation.objects.get(pk=evaluation.pk))

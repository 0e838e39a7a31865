"""Training-job services: create, enqueue, claim, run, cancel, retry, recover.

Rules that matter:
- a job's dataset is frozen when the job is created;
- a job is claimed atomically (queued → running with a fresh lease token), so it never runs
  twice at once; every progress write checks the lease, and an attempt that lost it stops;
- a running job whose heartbeat stops (worker killed, machine lost) is re-queued to resume
  from its last checkpoint, or failed with the reason once its attempts are used up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from training.core.config import TENSORBOARD_DIRNAME, TRACKING_FIELDS, TrainConfig
from training.core.datasets import parse_jsonl, validate_records
from training.core.errors import first_line
from training.models import Adapter, LanguageModel, TrainingDataset, TrainingJob, TrainingMetric
from training.recovery import DATABASE_UNAVAILABLE, claim, drop_broken_connection, keep_alive, recover_stale

logger = logging.getLogger(__name__)

MAX_EVENTS = 200


def job_group(job_id: int) -> str:
    return f"training.job.{job_id}"


# --- datasets ---------------------------------------------------------------------------


def dataset_create(
    *, name: str, method: str, records: list[dict[str, Any]], user=None, source: str = ""
) -> TrainingDataset:
    """Freeze validated records into a dataset (raises DatasetError listing every bad record)."""
    validate_records(records, method)
    blob = json.dumps(records, sort_keys=True, ensure_ascii=False).encode()
    return TrainingDataset.objects.create(
        name=name,
        method=method,
        records=records,
        record_count=len(records),
        sha256=hashlib.sha256(blob).hexdigest(),
        created_by=user,
        source=source,
    )


def dataset_create_from_jsonl(
    *, name: str, method: str, text: str, user=None, source: str = ""
) -> TrainingDataset:
    """Parse a JSONL upload; a bad line raises DatasetError with every bad line's number."""
    return dataset_create(
        name=name, method=method, records=parse_jsonl(text, method), user=user, source=source
    )


# --- creating and controlling jobs ------------------------------------------------------


def training_base_path(*, model: LanguageModel) -> str:
    """The folder (or hub id) the trainer loads: GGUF models train from their safetensors cache."""
    if model.backend == LanguageModel.Backend.OPENAI:
        raise ValidationError(
            f"{model.name} is served over HTTP; only local models "
            "(transformers or GGUF) can be fine-tuned here."
        )
    if model.backend == LanguageModel.Backend.GGUF:
        from training.core.llm.local import ensure_gguf_cache

        return str(ensure_gguf_cache(Path(model.source), Path(settings.TEACHLOOP_MODEL_CACHE_DIR)))
    return model.source


def job_dir(job: TrainingJob) -> Path:
    """The job's folder (checkpoints, adapter, log): its id and creation time, so a job of a reset
    database that reuses an id never finds another job's checkpoints."""
    return Path(settings.TEACHLOOP_DATA_DIR) / "jobs" / f"{job.pk}-{job.created_at:%Y%m%dT%H%M%S%f}"


def job_run_name(job: TrainingJob) -> str:
    """The job's name in an experiment tracker: its id and creation time, like its folder."""
    return f"teachloop-job-{job_dir(job).name}"


def job_tracking(job: TrainingJob) -> dict[str, str] | None:
    """Where the job's last attempt reported (from its config), for the job page; None when nowhere.

    tensorboard: ``folder`` (only once the folder exists) and the ``command`` that shows it;
    mlflow and wandb: the ``run_name`` to look for there.
    """
    report_to = (job.config or {}).get("report_to", "none")
    if report_to == "none":
        return None
    tracking = {"report_to": report_to, "run_name": job.config.get("run_name") or job_run_name(job)}
    if report_to == "tensorboard":
        folder = job_dir(job) / TENSORBOARD_DIRNAME
        if not folder.is_dir():
            return None
        tracking["folder"] = str(folder)
        tracking["command"] = f"tensorboard --logdir {folder}"
    return tracking


def training_job_create(
    *,
    base_model: LanguageModel,
    dataset: TrainingDataset,
    user=None,
    parent_adapter: Adapter | None = None,
    enqueue: bool = True,
    **hyper: Any,
) -> TrainingJob:
    """Validate the configuration, create the job and (unless ``enqueue=False``, as when the CLI
    runs it in-process) enqueue it for a worker once the transaction commits."""
    if parent_adapter is not None and parent_adapter.base_model_id != base_model.pk:
        raise ValidationError(
            f"adapter {parent_adapter} was trained on {parent_adapter.base_model.name}, not {base_model.name}"
        )
    if base_model.backend == LanguageModel.Backend.OPENAI:
        training_base_path(model=base_model)  # raises the clear error
    try:
        config = TrainConfig(
            base_model=base_model.source,
            method=dataset.method,
            parent_adapter=parent_adapter.path if parent_adapter else None,
            **hyper,
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc)) from exc
    with transaction.atomic():
        job = TrainingJob.objects.create(
            base_model=base_model,
            dataset=dataset,
            method=dataset.method,
            parent_adapter=parent_adapter,
            config=config.to_dict(),
            created_by=user,
        )
        _log(job, f"created by {user or 'system'}: {dataset.record_count} records, {dataset.method}")
        if enqueue:
            transaction.on_commit(lambda: training_job_enqueue(job=job))
    return job


def training_job_enqueue(*, job: TrainingJob) -> None:
    from training.tasks import run_training_job

    result = run_training_job.using(queue_name="training").enqueue(job.pk)
    TrainingJob.objects.filter(pk=job.pk).update(task_id=str(result.id)[:64])


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """A queued job is cancelled at once; a running one stops at its next step."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.status == TrainingJob.Status.QUEUED:
            job.status, job.finished_at = TrainingJob.Status.CANCELLED, timezone.now()
            job.save(update_fields=["status", "finished_at"])
            _log(job, "cancelled before it started")
        elif job.status == TrainingJob.Status.RUNNING:
            job.cancel_requested = True
            job.save(update_fields=["cancel_requested"])
            _log(job, "cancel requested")
    broadcast_state(job)
    return job


def training_job_retry(*, job: TrainingJob) -> TrainingJob:
    """Run a failed or cancelled job again, resuming from its last checkpoint."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.status not in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED):
            raise ValidationError(
                f"job {job.pk} is {job.status}; only failed or cancelled jobs can be retried"
            )
        job.status, job.cancel_requested, job.last_error, job.finished_at = (
            TrainingJob.Status.QUEUED,
            False,
            "",
            None,
        )
        job.max_attempts = job.attempts + max(1, job.max_attempts - job.attempts)
        job.save(update_fields=["status", "cancel_requested", "last_error", "finished_at", "max_attempts"])
        _log(job, "retry requested")
        transaction.on_commit(lambda: training_job_enqueue(job=job))
    broadcast_state(job)
    return job


def training_jobs_recover(*, stale_after_s: float | None = None) -> list[int]:
    """Re-queue (or fail) running jobs whose worker stopped sending heartbeats."""

    def settle(job: TrainingJob, since: str) -> None:
        lost = f"worker {job.worker} stopped responding ({since})"
        if job.cancel_requested:
            job.status, job.finished_at = TrainingJob.Status.CANCELLED, timezone.now()
            _log(job, f"{lost}; it was being cancelled")
        elif job.attempts >= job.max_attempts:
            job.status, job.finished_at = TrainingJob.Status.FAILED, timezone.now()
            job.last_error = f"{lost}; gave up after {job.attempts} attempts"
            _log(job, job.last_error)
        else:
            job.status = TrainingJob.Status.QUEUED
            _log(job, f"{lost}; re-queued to resume from its last checkpoint")
            transaction.on_commit(lambda: training_job_enqueue(job=job))

    return recover_stale(TrainingJob, stale_after_s=stale_after_s, settle=settle, broadcast=broadcast_state)


# --- running (called by the worker's task) ----------------------------------------------


def training_job_claim(*, job_id: int) -> tuple[TrainingJob, str] | None:
    """Atomically take a queued job; None when it is not queued (already taken or cancelled)."""
    with transaction.atomic():
        claimed = claim(TrainingJob, job_id)
        if claimed:
            job = claimed[0]
            _log(job, f"attempt {job.attempts} started on {job.worker}")
    return claimed


def train_processes() -> int:
    """How many processes a job trains with: TEACHLOOP_TRAIN_GPUS ("auto" = every visible GPU, or N),
    never more than the GPUs there are; 1 (in this process) on CPU."""
    from training.core.launch import num_gpus

    wanted = str(settings.TEACHLOOP_TRAIN_GPUS).strip().lower()
    gpus = num_gpus()
    return max(1, min(gpus if wanted == "auto" else int(wanted), gpus))


def training_job_run(*, job_id: int, on_event: Callable[[Any], None] | None = None) -> str:
    """Claim and run a job with the training engine; returns the final status.

    ``on_event`` also receives each progress event (the CLI draws its progress bar with it).
    """
    from training.core.launch import run_distributed
    from training.core.trainer import train

    claimed = training_job_claim(job_id=job_id)
    if claimed is None:
        return "skipped"
    job, lease = claimed
    broadcast_state(job)
    progress = _Progress(job, lease, on_event)
    stop_heartbeat = threading.Event()
    heart = threading.Thread(
        target=keep_alive,
        args=(TrainingJob.objects.filter(pk=job.pk, lease=lease),),
        kwargs={
            "every_s": settings.TEACHLOOP_JOB_HEARTBEAT_S,
            "stop": stop_heartbeat,
            "what": f"training job {job.pk}",
        },
        daemon=True,
        name=f"heartbeat-{job.pk}",
    )
    heart.start()
    try:
        job = _set_tracking(job, lease)
        config = TrainConfig.from_dict({**job.config, "base_model": training_base_path(model=job.base_model)})
        kwargs = {"progress": progress.on_event, "should_stop": progress.should_stop, "resume": True}
        processes = train_processes()
        if processes > 1:  # all GPUs of this host, under `accelerate launch` (docs/multi-gpu.md)
            _log(job, f"training on {processes} GPUs under accelerate launch")
            result = run_distributed(
                config, job.dataset.records, job_dir(job), num_processes=processes, poll_s=1.0, **kwargs
            )
        else:
            result = train(config, job.dataset.records, job_dir(job), **kwargs)
    except DATABASE_UNAVAILABLE as exc:
        # Not the job's fault: it stays running without a heartbeat, and recovery re-queues it to resume
        # from its last checkpoint once the database answers again.
        logger.warning(
            "training job %s interrupted, the database is unavailable (%s); recovery will resume it",
            job.pk,
            first_line(exc),
        )
        drop_broken_connection()
        return "interrupted"
    except Exception as exc:
        logger.exception("training job %s crashed", job.pk)
        _finish(job, lease, status=TrainingJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return TrainingJob.Status.FAILED
    finally:
        stop_heartbeat.set()
    if progress.lost_lease:
        return "lost"
    adapter = None
    if result.adapter_dir is not None and result.status == "succeeded":
        adapter = _register_adapter(job, result)
    _finish(
        job,
        lease,
        status=result.status,
        error=result.reason if result.status == "failed" else "",
        adapter=adapter,
        note=result.reason,
    )
    return result.status


def _set_tracking(job: TrainingJob, lease: str) -> TrainingJob:
    """Record in the job's config where this attempt reports (this worker's TEACHLOOP_REPORT_TO, and
    the job's run name), so the job page and the adapter say what the training did."""
    report_to = settings.TEACHLOOP_REPORT_TO
    tracking = {"report_to": report_to, "run_name": job_run_name(job) if report_to != "none" else None}
    if any(job.config.get(name) != tracking[name] for name in TRACKING_FIELDS):
        job.config = {**job.config, **tracking}
        TrainingJob.objects.filter(pk=job.pk, lease=lease).update(config=job.config)
    if report_to != "none":
        _log(job, f"reporting to {report_to} as run {tracking['run_name']}")
    return job


class _Progress:
    """Adapts engine progress events to database rows and WebSocket broadcasts."""

    def __init__(self, job: TrainingJob, lease: str, on_event: Callable[[Any], None] | None = None) -> None:
        self.job, self.lease, self.lost_lease, self.extra = job, lease, False, on_event
        self.first = True

    def on_event(self, event) -> None:
        """Record one step and tell the job's page. The database out of reach for a moment (PostgreSQL
        restarting) loses this step's row, not the training: the next step writes again."""
        try:
            self._record(event)
        except DATABASE_UNAVAILABLE as exc:
            logger.warning(
                "training job %s: step %s not recorded, the database is unavailable: %s",
                self.job.pk,
                event.step,
                first_line(exc),
            )
            drop_broken_connection()

    def _record(self, event) -> None:
        data = asdict(event)
        updated = TrainingJob.objects.filter(pk=self.job.pk, lease=self.lease).update(
            step=event.step,
            total_steps=event.total_steps,
            loss=event.loss,
            eval_loss=event.eval_loss,
            tokens_per_s=event.tokens_per_s,
            eta_s=event.eta_s,
            heartbeat_at=timezone.now(),
        )
        if not updated:
            self.lost_lease = True
            return
        if self.first:
            self.first = False
            if event.step > 1:
                _log(self.job, f"resumed from the checkpoint at step {event.step - 1}")
        TrainingMetric.objects.update_or_create(
            job_id=self.job.pk,
            step=event.step,
            defaults={
                "loss": event.loss,
                "learning_rate": data.get("learning_rate"),
                "grad_norm": data.get("grad_norm"),
                "tokens_per_s": event.tokens_per_s,
                "eval_loss": event.eval_loss,
            },
        )
        self.job.refresh_from_db()
        broadcast_step(self.job, event)
        if self.extra is not None:
            self.extra(event)

    def should_stop(self) -> bool:
        """Cancelled, or the lease lost to a recovery; the database out of reach reads as "go on"."""
        try:
            row = TrainingJob.objects.filter(pk=self.job.pk).values("cancel_requested", "lease").first()
        except DATABASE_UNAVAILABLE as exc:
            logger.warning(
                "training job %s: cannot read its state (%s); going on", self.job.pk, first_line(exc)
            )
            drop_broken_connection()
            return False
        if row is None or row["lease"] != self.lease:
            self.lost_lease = True
            return True
        return row["cancel_requested"]


def _register_adapter(job: TrainingJob, result) -> Adapter:
    with transaction.atomic():
        last = (
            Adapter.objects.select_for_update().filter(base_model=job.base_model).order_by("-version").first()
        )
        return Adapter.objects.create(
            base_model=job.base_model,
            version=(last.version + 1) if last else 1,
            parent=job.parent_adapter,
            path=str(result.adapter_dir),
            method=job.method,
            config=job.config,
            metrics=result.metrics,
        )


def _finish(
    job: TrainingJob,
    lease: str,
    *,
    status: str,
    error: str = "",
    adapter: Adapter | None = None,
    note: str = "",
) -> None:
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.lease != lease:
            return  # another attempt owns the job now
        job.status, job.last_error, job.finished_at, job.lease = status, error, timezone.now(), ""
        if adapter is not None:
            job.adapter = adapter
        job.save()
        _log(job, f"{status}" + (f": {note}" if note else "") + (f"; adapter {adapter}" if adapter else ""))
    broadcast_state(job)


def _log(job: TrainingJob, message: str) -> None:
    """Append to the job's event log (kept short) and save it."""
    events = list(TrainingJob.objects.filter(pk=job.pk).values_list("events", flat=True).first() or [])
    events.append({"at": timezone.now().isoformat(timespec="seconds"), "message": message})
    job.events = events[-MAX_EVENTS:]
    TrainingJob.objects.filter(pk=job.pk).update(events=job.events)


# --- live updates -----------------------------------------------------------------------


def job_state_html(job: TrainingJob) -> str:
    return render_to_string("training/partials/job_state.html", {"job": job})


def with_points(html: str, points: list[dict]) -> str:
    """A job's state fragment plus new chart points as escaped JSON in a data attribute: what a job's
    socket is sent."""
    return html + render_to_string("training/partials/job_points.html", {"points": json.dumps(points)})


def _send(job_id: int, message: dict[str, Any]) -> None:
    """Broadcast a ``job.update`` (its state ``html`` and new ``points``) to the job's sockets, rendered
    here once rather than by each socket's consumer."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": message["type"], "html": with_points(message["html"], message.get("points", []))}
    try:
        async_to_sync(layer.group_send)(job_group(job_id), message)
    except Exception:  # a broken channel layer must never fail the training itself
        logger.exception("could not broadcast job %s update", job_id)


def broadcast_state(job: TrainingJob) -> None:
    _send(job.pk, {"type": "job.update", "html": job_state_html(job), "points": []})


def broadcast_step(job: TrainingJob, event) -> None:
    point = {"step": event.step, "loss": event.loss, "eval_loss": event.eval_loss}
    _send(job.pk, {"type": "job.update", "html": job_state_html(job), "points": [point]})

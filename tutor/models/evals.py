"""Stored evaluations: a student, with and without adapters, on a course's items or uploaded ones."""

from __future__ import annotations

from django.db import models

from training.models import Adapter, LanguageModel
from tutor.models.courses import Course


class Evaluation(models.Model):
    """One comparison: the base student and each chosen adapter answer the same items (greedy), graded
    like a run's exam; ``results`` holds the per-skill table and each column's right/wrong per item.

    Runs in a worker like a training job (claimed with a lease, kept alive by heartbeats, re-queued
    or failed when its worker dies). A column that a finished evaluation already answered (same
    student, adapter folder, items and token limit: ``column_keys``) is copied, not recomputed.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    course = models.ForeignKey(
        Course, null=True, blank=True, on_delete=models.SET_NULL, related_name="evaluations"
    )
    student = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="evaluations")
    adapters = models.ManyToManyField(Adapter, blank=True, related_name="evaluations")
    split = models.CharField(
        max_length=20, help_text="exam, held-out, keep, probe, or upload (the items of an uploaded file)"
    )
    source = models.CharField(max_length=300, blank=True, help_text="what was evaluated, in words")
    items = models.JSONField(default=list, help_text="the items asked, frozen when it was made")
    columns = models.JSONField(
        default=list, help_text="[{label, adapter (id or null), path, key}], the base first"
    )
    max_new_tokens = models.PositiveIntegerField(default=128, db_default=128)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False, db_default=False)
    done = models.PositiveIntegerField(default=0, db_default=0, help_text="answers graded so far")
    total = models.PositiveIntegerField(default=0, db_default=0, help_text="answers to grade in all")
    current = models.CharField(
        max_length=200, blank=True, db_default="", help_text="the column being answered"
    )
    results = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True, db_default="")
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    max_attempts = models.PositiveIntegerField(default=3, db_default=3)
    worker = models.CharField(max_length=200, blank=True, db_default="")
    lease = models.CharField(max_length=64, blank=True, db_default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"evaluation {self.pk}: {self.student} on {self.source}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

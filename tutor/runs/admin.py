"""Admin of teaching runs (read-only mirrors; runs start from /runs/new/ or `manage.py teach`)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from tutor.models import Round, RunExplanation, TeachingRun
from tutor.runs import services


class RoundInline(admin.TabularInline):
    """The run's rounds, read-only: they mirror the run's state file (a sync would undo any edit)."""

    model = Round
    fields = readonly_fields = [
        "index",
        "done_steps",
        "accuracy",
        "base_accuracy",
        "vs_base",
        "vs_previous",
        "agreement",
        "explained",
        "dropped_explanations",
        "helped",
        "generated_kept",
        "sft_records",
        "warnings",
        "job",
        "adapter_path",
        "extra",
    ]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="training job")
    def job(self, row: Round) -> str:
        if row.training_job_id is None:
            return "—"
        url = reverse("admin:training_trainingjob_change", args=[row.training_job_id])
        return format_html('<a href="{}">job #{}</a>', url, row.training_job_id)


@admin.register(TeachingRun)
class TeachingRunAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "current_round",
        "current_step",
        "attempts",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "course"]
    readonly_fields = [
        "course",
        "student",
        "teacher",
        "config",
        "train_config",
        "status",
        "current_round",
        "current_step",
        "adapter_path",
        "last_error",
        "attempts",
        "worker",
        "heartbeat_at",
        "feedback_jobs",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    exclude = ["lease"]
    inlines = [RoundInline]
    actions = ["cancel", "resume"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started from /runs/new/ or with `manage.py teach`

    @admin.action(description="Cancel after the current step")
    def cancel(self, request: HttpRequest, queryset) -> None:
        runs = list(queryset.filter(status__in=["queued", "running"]))
        for run in runs:
            services.teaching_run_cancel(run=run)
        self.message_user(request, f"Cancel requested for {len(runs)} run(s).")

    @admin.action(description="Resume failed or cancelled runs from their last finished step")
    def resume(self, request: HttpRequest, queryset) -> None:
        runs = list(queryset.filter(status__in=["failed", "cancelled"]))
        for run in runs:
            services.teaching_run_resume(run=run)
        self.message_user(request, f"Queued {len(runs)} run(s) again.")


@admin.register(RunExplanation)
class RunExplanationAdmin(admin.ModelAdmin):
    """Read-only mirror of the runs' explanations; people rate and edit them on the run's page."""

    list_display = ["__str__", "skill", "passed_gate", "score", "rating", "rated_by"]
    list_filter = ["rating", "passed_gate", "run"]
    search_fields = ["key", "item", "text", "edited_text"]
    readonly_fields = [f.name for f in RunExplanation._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from tutor import services
from tutor.core.course import CourseError
from tutor.core.course_io import CourseImportError, parse_course_jsonl
from tutor.forms import CourseUploadForm
from tutor.models import Course, Exercise, Round, RunExplanation, Skill, TeachingRun


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "teacher", "source", "created_at"]
    search_fields = ["name", "key"]
    filter_horizontal = ["instructors"]
    change_list_template = "admin/tutor/course/change_list.html"

    def get_urls(self):
        return [path("import/", self.admin_site.admin_view(self.import_view), name="tutor_course_import"),
                *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a course JSONL; every bad line is listed and nothing is imported."""
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = CourseUploadForm(request.POST or None, request.FILES or None)
        line_errors: list[tuple[int, str]] = []
        if request.method == "POST" and form.is_valid():
            try:
                course = parse_course_jsonl(form.cleaned_data["file"])
                row = services.course_save(course=course, source=request.FILES["file"].name,
                                           replace=form.cleaned_data["replace"])
            except CourseImportError as exc:
                line_errors = exc.errors[:200]
                form.add_error("file", f"{len(exc.errors)} bad line(s); nothing was imported.")
            except (CourseError, services.CourseExists) as exc:
                form.add_error("file", str(exc))
            except services.CourseInUse as exc:
                form.add_error("replace", str(exc))
            else:
                self.message_user(request, f"Imported {row.name}: {len(course.skills)} skills, "
                                  f"{len(course.exercises)} exercises{services.replaced_note(row)}.", messages.SUCCESS)
                return redirect("admin:tutor_course_changelist")
        context = {**self.admin_site.each_context(request), "title": "Import a course", "form": form,
                   "line_errors": line_errors, "opts": self.model._meta}
        return TemplateResponse(request, "admin/tutor/course/import.html", context)


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "course", "order"]
    list_filter = ["course"]
    filter_horizontal = ["prerequisites"]


@admin.register(Exercise)
class ExerciseAdmin(admin.ModelAdmin):
    list_display = ["__str__", "split", "answer_type", "difficulty", "answer"]
    list_filter = ["split", "answer_type", "skill__course", "skill"]
    search_fields = ["prompt", "key"]


class RoundInline(admin.TabularInline):
    """The run's rounds, read-only: they mirror the run's state file (a sync would undo any edit)."""

    model = Round
    fields = readonly_fields = ["index", "done_steps", "accuracy", "base_accuracy", "vs_base", "vs_previous",
                                "agreement", "explained", "dropped_explanations", "helped", "generated_kept",
                                "sft_records", "warnings", "job", "adapter_path", "extra"]
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
    list_display = ["__str__", "status", "current_round", "current_step", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "course"]
    readonly_fields = ["course", "student", "teacher", "config", "train_config", "status", "current_round",
                       "current_step", "adapter_path", "last_error", "attempts", "worker", "heartbeat_at",
                       "feedback_jobs", "created_by", "created_at", "started_at", "finished_at"]
    exclude = ["lease"]
    inlines = [RoundInline]
    actions = ["cancel", "resume"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started from /runs/new/ or with `manage.py teach`

    @admin.action(description="Cancel after the current step")
    def cancel(self, request: HttpRequest, queryset) -> None:
        from tutor.teaching import teaching_run_cancel

        runs = list(queryset.filter(status__in=["queued", "running"]))
        for run in runs:
            teaching_run_cancel(run=run)
        self.message_user(request, f"Cancel requested for {len(runs)} run(s).")

    @admin.action(description="Resume failed or cancelled runs from their last finished step")
    def resume(self, request: HttpRequest, queryset) -> None:
        from tutor.teaching import teaching_run_resume

        runs = list(queryset.filter(status__in=["failed", "cancelled"]))
        for run in runs:
            teaching_run_resume(run=run)
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

from tutor import admin_learn  # noqa: E402,F401  (learner-side models; kept in their own module)

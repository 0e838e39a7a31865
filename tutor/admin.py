from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from tutor import services
from tutor.core.course import CourseError
from tutor.core.course_io import CourseImportError, parse_course_jsonl
from tutor.forms import CourseUploadForm
from tutor.models import Course, Exercise, RunExplanation, Skill, TeachingRun


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
            else:
                self.message_user(request, f"Imported {row.name}: {len(course.skills)} skills, "
                                  f"{len(course.exercises)} exercises.", messages.SUCCESS)
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


@admin.register(TeachingRun)
class TeachingRunAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "current_round", "current_step", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "course"]
    readonly_fields = ["course", "student", "teacher", "config", "train_config", "status", "current_round",
                       "current_step", "results", "adapter_path", "last_error", "attempts", "worker",
                       "heartbeat_at", "round_jobs", "feedback_jobs", "created_by", "created_at", "started_at",
                       "finished_at"]
    exclude = ["lease"]
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

"""Admin of courses: import from JSONL, skills and exercises."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from tutor.core.courses.course import CourseError
from tutor.core.courses.formats import CourseImportError, parse_course_jsonl
from tutor.courses import services
from tutor.courses.forms import CourseUploadForm
from tutor.models import Course, Exercise, Skill


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "teacher", "expert", "source", "created_at"]
    search_fields = ["name", "key"]
    filter_horizontal = ["instructors"]
    change_list_template = "admin/tutor/course/change_list.html"

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="tutor_course_import"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a course JSONL; every bad line is listed and nothing is imported."""
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = CourseUploadForm(request.POST or None, request.FILES or None)
        line_errors: list[tuple[int, str]] = []
        if request.method == "POST" and form.is_valid():
            try:
                course = parse_course_jsonl(form.cleaned_data["file"])
                row = services.course_save(
                    course=course, source=request.FILES["file"].name, replace=form.cleaned_data["replace"]
                )
            except CourseImportError as exc:
                line_errors = exc.errors[:200]
                form.add_error("file", f"{len(exc.errors)} bad line(s); nothing was imported.")
            except (CourseError, services.CourseExists) as exc:
                form.add_error("file", str(exc))
            except services.CourseInUse as exc:
                form.add_error("replace", str(exc))
            else:
                self.message_user(
                    request,
                    f"Imported {row.name}: {len(course.skills)} skills, "
                    f"{len(course.exercises)} exercises{services.replaced_note(row)}.",
                    messages.SUCCESS,
                )
                return redirect("admin:tutor_course_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a course",
            "form": form,
            "line_errors": line_errors,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/tutor/course/import.html", context)


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "course", "order", "keep"]
    list_filter = ["course", "keep"]
    filter_horizontal = ["prerequisites"]


@admin.register(Exercise)
class ExerciseAdmin(admin.ModelAdmin):
    list_display = ["__str__", "split", "phrasing", "held_out", "answer_type", "difficulty", "answer"]
    list_filter = ["split", "held_out", "answer_type", "skill__course", "skill"]
    search_fields = ["prompt", "key"]

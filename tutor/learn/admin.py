"""Admin for the learner side: enrolments, sessions, answers, the tutor's messages and ratings."""

from __future__ import annotations

from django.contrib import admin

from tutor.models import (
    LearnerAttempt,
    LearnerEnrolment,
    LearnerSkillState,
    TutorFeedback,
    TutoringSession,
    TutorMessage,
)


@admin.register(LearnerEnrolment)
class LearnerEnrolmentAdmin(admin.ModelAdmin):
    list_display = ["user", "course", "level", "scaffolding", "created_at"]
    list_filter = ["course", "level"]
    search_fields = ["user__username"]


@admin.register(LearnerSkillState)
class LearnerSkillStateAdmin(admin.ModelAdmin):
    list_display = ["enrolment", "skill", "p_known", "attempts", "correct", "review_due", "mastered_at"]
    list_filter = ["enrolment__course"]


@admin.register(TutoringSession)
class TutoringSessionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "exercise", "reason", "created_at"]
    list_filter = ["enrolment__course"]


@admin.register(LearnerAttempt)
class LearnerAttemptAdmin(admin.ModelAdmin):
    list_display = ["session", "exercise", "answer", "correct", "graded_by", "created_at"]
    list_filter = ["correct", "graded_by"]


@admin.register(TutorMessage)
class TutorMessageAdmin(admin.ModelAdmin):
    list_display = ["__str__", "session", "status", "source", "error_type", "strategy", "created_at"]
    list_filter = ["kind", "status", "source", "strategy", "error_type"]
    search_fields = ["text", "question", "intention", "failed_check", "failed_text"]


@admin.register(TutorFeedback)
class TutorFeedbackAdmin(admin.ModelAdmin):
    list_display = ["message", "user", "kind", "value", "created_at"]
    list_filter = ["kind", "value"]

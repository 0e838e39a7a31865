"""Reads of the learner side: who sees what, mastery and reviews, the learner as the teacher sees
them, and the preference records learners' ratings make."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from training.models import LanguageModel
from training.services import default_model
from tutor.core.learn import prompts as core
from tutor.core.learn.mastery import DEFAULT_PARAMS, BKTParams, is_mastered
from tutor.models import (
    Course,
    LearnerAttempt,
    LearnerEnrolment,
    LearnerSkillState,
    Skill,
    TutorFeedback,
    TutoringSession,
    TutorMessage,
)

logger = logging.getLogger(__name__)


def course_instructed_by(*, course: Course, user) -> bool:
    """Instructors of a course see its learners; superusers are instructors of every course."""
    if not (user and user.is_authenticated):
        return False
    return user.is_superuser or course.instructors.filter(pk=user.pk).exists()


def courses_instructed_by(*, user) -> QuerySet[Course]:
    if user.is_superuser:
        return Course.objects.all()
    return Course.objects.filter(instructors=user)


def tutoring_sessions_visible_to(*, user) -> QuerySet[TutoringSession]:
    """A learner's own sessions, plus every session of the courses the user instructs."""
    qs = TutoringSession.objects.select_related("enrolment__course", "enrolment__user", "exercise__skill")
    if not (user and user.is_authenticated):
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(Q(enrolment__user=user) | Q(enrolment__course__instructors=user)).distinct()


def skill_bkt_params(skill: Skill) -> BKTParams:
    """The skill's own BKT probabilities over the defaults; bad values fall back to the defaults."""
    known = {k: v for k, v in (skill.bkt_params or {}).items() if k in ("prior", "learn", "guess", "slip")}
    if not known:
        return DEFAULT_PARAMS
    try:
        return BKTParams(**{**DEFAULT_PARAMS.__dict__, **known})
    except ValueError as exc:
        logger.warning("skill %s has bad BKT parameters (%s); using the defaults", skill.key, exc)
        return DEFAULT_PARAMS


def enrolment_with_progress(*, user, course_key: str) -> LearnerEnrolment | None:
    """The user's enrolment in the course, with its course and its skill states (and their skills)
    loaded, so that :func:`learner_mastery` and :func:`learner_reviews_due` read them without a query."""
    return (
        LearnerEnrolment.objects.filter(user=user, course__key=course_key)
        .select_related("course")
        .prefetch_related(
            Prefetch("skill_states", queryset=LearnerSkillState.objects.select_related("skill"))
        )
        .first()
    )


def learner_mastery(*, enrolment: LearnerEnrolment) -> list[dict[str, Any]]:
    """One row per skill in course order: the skill, P(known) (the prior if never practised), and flags."""
    states = {s.skill_id: s for s in enrolment.skill_states.all()}
    rows = []
    for skill in enrolment.course.skills.all():
        state = states.get(skill.pk)
        p = state.p_known if state else skill_bkt_params(skill).prior
        rows.append(
            {
                "skill": skill,
                "p_known": p,
                "percent": round(p * 100),
                "mastered": is_mastered(p),
                "attempts": state.attempts if state else 0,
                "review_due": state.review_due if state else None,
            }
        )
    return rows


def learner_reviews_due(
    *, enrolment: LearnerEnrolment, now: datetime | None = None
) -> list[LearnerSkillState]:
    """Mastered skills whose spaced review is due, most overdue first."""
    now = now or timezone.now()
    if "skill_states" in getattr(enrolment, "_prefetched_objects_cache", {}):
        due = [s for s in enrolment.skill_states.all() if s.review_due is not None and s.review_due <= now]
        return sorted(due, key=lambda s: s.review_due)
    return list(
        enrolment.skill_states.filter(review_due__lte=now).select_related("skill").order_by("review_due")
    )


def learner_context(*, enrolment: LearnerEnrolment) -> core.LearnerContext:
    """Level, started skills' mastery, recent mistakes and the last difficulty rating."""
    states = enrolment.skill_states.select_related("skill").filter(attempts__gt=0)
    mistakes = (
        LearnerAttempt.objects.filter(session__enrolment=enrolment, correct=False)
        .select_related("exercise")
        .order_by("-created_at")[: core.MAX_MISTAKES_SHOWN]
    )
    difficulty = (
        TutorFeedback.objects.filter(
            message__session__enrolment=enrolment, kind=TutorFeedback.Kind.DIFFICULTY
        )
        .order_by("-created_at")
        .values_list("value", flat=True)
        .first()
    )
    return core.LearnerContext(
        level=enrolment.level,
        mastery=tuple((s.skill.name, s.p_known) for s in states),
        mistakes=tuple(core.Mistake(a.exercise.prompt, a.answer) for a in mistakes),
        difficulty_feedback=difficulty if difficulty in ("too_easy", "too_hard") else "",
        scaffolding=enrolment.scaffolding,
    )


def course_teacher(*, course: Course) -> LanguageModel | None:
    teacher = course.teacher if course.teacher_id and course.teacher.enabled else None
    return teacher or default_model(role="teacher")


def tutoring_preference_records(*, course: Course, method: str) -> list[dict[str, Any]]:
    """Preference records from the course's ratings, in TRL's conversational format.

    - ``dpo``: one pair per pairwise choice (the same prompt; chosen vs. rejected explanation);
    - ``kto``: one thumb per helpful / not-helpful rating, and per side of a pairwise choice.

    Only what the model wrote and what passed its checks is trained on: the course's own text shown in
    place of a failed reply, a note, or an unchecked reply is never a completion of the teacher's.
    """
    model = TutorMessage.Source.MODEL
    feedback = (
        TutorFeedback.objects.filter(
            message__session__enrolment__course=course,
            message__status=TutorMessage.Status.DONE,
            message__source=model,
            message__failed_check="",
        )
        .exclude(message__text="")
        .select_related("message", "rejected")
        .order_by("pk")
    )
    records: list[dict[str, Any]] = []
    for f in feedback:
        prompt = f.message.prompt
        if not prompt:
            continue
        meta = {"message": f.message.pk, "feedback": f.pk, "course": course.key}
        if (
            f.kind == TutorFeedback.Kind.CHOICE
            and f.rejected
            and f.rejected.text
            and f.rejected.status == TutorMessage.Status.DONE
            and f.rejected.source == model
            and not f.rejected.failed_check
            and f.rejected.text != f.message.text
        ):
            if method == "dpo":
                records.append(
                    {
                        "prompt": prompt,
                        "chosen": [_assistant(f.message.text)],
                        "rejected": [_assistant(f.rejected.text)],
                        "meta": meta,
                    }
                )
            else:
                records.append(
                    {
                        "prompt": prompt,
                        "completion": [_assistant(f.message.text)],
                        "label": True,
                        "meta": meta,
                    }
                )
                records.append(
                    {
                        "prompt": prompt,
                        "completion": [_assistant(f.rejected.text)],
                        "label": False,
                        "meta": meta,
                    }
                )
        elif f.kind == TutorFeedback.Kind.HELPFUL and method == "kto":
            records.append(
                {
                    "prompt": prompt,
                    "completion": [_assistant(f.message.text)],
                    "label": f.value == "helpful",
                    "meta": meta,
                }
            )
    return records


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}

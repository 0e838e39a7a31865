"""Course services (HackSoft style: keyword-only ``<entity>_<action>`` functions)."""

from __future__ import annotations

from django.db import transaction

from tutor.core.courses import course as core
from tutor.models import Course, Exercise, LearnerEnrolment, Skill


class CourseExists(Exception):
    pass


class CourseInUse(Exception):
    """A course that teaching runs were made on: it cannot be replaced (``TeachingRun.course`` is PROTECT)."""


@transaction.atomic
def course_save(*, course: core.Course, source: str = "", replace: bool = False) -> Course:
    """Store a validated core course, all or nothing.

    An existing course with the same key is an error unless ``replace`` is given, in which case
    it is deleted and stored afresh, with its learners' enrolments, sessions and mastery (they
    cascade). A course with teaching runs is never replaced (:class:`CourseInUse`): a run's rounds,
    explanations and state file name the course's skills and items, and its numbers must stay
    readable against them.

    The returned row's ``replaced_enrolments`` says how many learner enrolments went with a replaced
    course (0 when nothing was replaced), for the caller to report.
    """
    replaced_enrolments = 0
    existing = Course.objects.filter(key=course.key).first()
    if existing is not None:
        if not replace:
            raise CourseExists(
                f"a course with key {course.key!r} exists already (use --replace to overwrite it)"
            )
        runs = list(existing.runs.order_by("pk").values_list("pk", flat=True))
        if runs:
            shown = ", ".join(f"#{pk}" for pk in runs[:10]) + (", …" if len(runs) > 10 else "")
            raise CourseInUse(
                f"course {course.key!r} has {len(runs)} teaching run{'s' if len(runs) != 1 else ''} "
                f"({shown}); nothing was imported. Import it under a new key, or delete the runs "
                "first."
            )
        _, deleted = existing.delete()
        replaced_enrolments = deleted.get(LearnerEnrolment._meta.label, 0)
    row = Course.objects.create(key=course.key, name=course.name, source=source, expert=course.expert)
    row.replaced_enrolments = replaced_enrolments
    skills: dict[str, Skill] = {}
    for order, skill in enumerate(course.skills):
        skills[skill.key] = Skill.objects.create(
            course=row,
            key=skill.key,
            name=skill.name,
            description=skill.description,
            order=order,
            keep=skill.keep,
        )
    for skill in course.skills:
        skills[skill.key].prerequisites.set([skills[key] for key in skill.prerequisites])
    Exercise.objects.bulk_create(
        Exercise(
            skill=skills[e.skill],
            key=e.key,
            prompt=e.prompt,
            answer=e.answer,
            answer_type=e.answer_type,
            options=list(e.options),
            solution=e.solution,
            difficulty=e.difficulty,
            split=e.split,
            phrasing=e.phrasing,
            held_out=e.held_out,
        )
        for e in course.exercises
    )
    return row


def replaced_note(row: Course) -> str:
    """What a replace took with it, for the import's message ("" when nothing was enrolled)."""
    n = getattr(row, "replaced_enrolments", 0)
    if not n:
        return ""
    return (
        f"; the course it replaced had {n} learner enrolment{'s' if n != 1 else ''}, deleted with their "
        "sessions and mastery"
    )


def exercise_to_core(*, exercise: Exercise) -> core.Exercise:
    """A stored exercise as the cores see it (its skill loaded, or one query more)."""
    return core.Exercise(
        key=exercise.key,
        skill=exercise.skill.key,
        prompt=exercise.prompt,
        answer=exercise.answer,
        answer_type=exercise.answer_type,
        options=tuple(exercise.options),
        solution=exercise.solution,
        difficulty=exercise.difficulty,
        split=exercise.split,
        phrasing=exercise.phrasing,
        held_out=exercise.held_out,
    )


def course_to_core(*, course: Course) -> core.Course:
    """Rebuild the plain-Python course (for the planner, grading and the teaching loop)."""
    skills = [
        core.Skill(
            key=s.key,
            name=s.name,
            description=s.description,
            prerequisites=tuple(p.key for p in s.prerequisites.all()),
            keep=s.keep,
        )
        for s in course.skills.prefetch_related("prerequisites")
    ]
    exercises = [
        exercise_to_core(exercise=e)
        for e in Exercise.objects.filter(skill__course=course).select_related("skill").order_by("pk")
    ]
    return core.Course(
        key=course.key, name=course.name, skills=skills, exercises=exercises, expert=course.expert
    )

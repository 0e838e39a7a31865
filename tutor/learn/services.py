"""Tutoring human learners (HackSoft style: keyword-only ``<entity>_<action>`` functions).

Rules that matter:
- an answer, a question or a rating is written to the database **before** anything else happens
  (grading, a teacher call, a broadcast): a teacher failure, a reload or a lost socket loses
  nothing the learner typed;
- a tutor message is written by exactly one generator: it is claimed atomically
  (pending → streaming), so two open tabs never generate it twice; a failed one keeps its error
  and waits for the learner's retry;
- on a mistake the teacher's decision (error type, strategy, intention) is stored on the message
  before the reply is generated;
- **nothing the model writes reaches a learner unchecked**: the whole reply is checked
  (:func:`tutor_message_vet`, rules in ``tutor.core.learn.vetting``) before it is stored as the
  message's text; one that fails is replaced by the course's own text, labelled as the course's,
  and the failure is kept for instructors and logged. Preference data uses only the model's replies
  that passed;
- an explanation teaches the skill through a worked example: another train item of the skill with a
  different gold answer, never the exercise on the learner's screen;
- learners reach only their own enrolments, sessions, answers and ratings; instructors of a
  course (``Course.instructors``, or superusers) see its learners;
- exam items never reach a learner (they would end up in the feedback that trains the teacher).
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from training.core.llm import LLMError
from training.generation import GenerationRequest, whole_reply
from training.models import LanguageModel
from tutor.core.courses import course as core_course
from tutor.core.courses.expert import PACK_EXPERTS, Expert, expert_for
from tutor.core.courses.grading import grade, normalize_text
from tutor.core.learn import prompts as core
from tutor.core.learn import vetting
from tutor.core.learn.mastery import bkt_update, is_mastered
from tutor.core.learn.next_item import choose_next_skill
from tutor.core.learn.review import ReviewState, new_review_state, record_review
from tutor.courses.services import exercise_to_core
from tutor.learn.live import tutor_message_announce
from tutor.learn.selectors import (
    course_teacher,
    learner_context,
    learner_reviews_due,
    skill_bkt_params,
    tutoring_preference_records,
)
from tutor.models import (
    Course,
    Exercise,
    LearnerAttempt,
    LearnerEnrolment,
    LearnerSkillState,
    Skill,
    TutorFeedback,
    TutoringSession,
    TutorMessage,
)

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 2000
MAX_QUESTION_CHARS = core.MAX_QUESTION_CHARS
STALE_STREAMING_S = 300  # a message "streaming" this long lost its generator (process restart)
TEACHER_UNAVAILABLE = "The tutor could not answer just now. Nothing you typed is lost; try again in a moment."
# A message back in the queue: nothing of an earlier try is kept.
_UNWRITTEN = {"text": "", "error": "", "source": "", "label": "", "failed_check": "", "failed_text": ""}


@transaction.atomic
def learner_enrol(
    *, user, course: Course, level: str = LearnerEnrolment.Level.BEGINNER, scaffolding: bool = True
) -> LearnerEnrolment:
    """Enrol ``user`` (or update their stated level and preference if already enrolled)."""
    enrolment, _ = LearnerEnrolment.objects.update_or_create(
        user=user, course=course, defaults={"level": level, "scaffolding": scaffolding}
    )
    return enrolment


def tutoring_session_start(
    *, enrolment: LearnerEnrolment, rng: random.Random | None = None
) -> TutoringSession:
    session = TutoringSession.objects.create(enrolment=enrolment)
    return tutoring_session_next(session=session, rng=rng)


@transaction.atomic
def tutoring_session_next(*, session: TutoringSession, rng: random.Random | None = None) -> TutoringSession:
    """Put the next exercise on the learner's screen, and queue an explanation of its skill if they
    never had one."""
    enrolment = session.enrolment
    skills = list(enrolment.course.skills.prefetch_related("prerequisites"))
    if not skills:
        session.exercise, session.reason = None, ""
        session.save(update_fields=["exercise", "reason", "updated_at"])
        return session
    by_key = {s.key: s for s in skills}
    states = {s.skill_id: s for s in enrolment.skill_states.all()}
    mastery = {s.key: states[s.pk].p_known for s in skills if s.pk in states and states[s.pk].attempts}
    due = [state.skill.key for state in learner_reviews_due(enrolment=enrolment)]
    choice = choose_next_skill(
        [(s.key, [p.key for p in s.prerequisites.all()]) for s in skills],
        mastery,
        due,
        rng=rng or random.Random(),
    )
    skill = by_key[choice.skill]
    session.exercise, session.reason = (
        _pick_exercise(enrolment=enrolment, skill=skill, current=session.exercise),
        choice.reason,
    )
    session.save(update_fields=["exercise", "reason", "updated_at"])
    explained = TutorMessage.objects.filter(
        session__enrolment=enrolment, kind=TutorMessage.Kind.EXPLANATION, skill=skill
    ).exists()
    if not explained and session.exercise is not None:
        tutor_explanation_queue(session=session, skill=skill, rng=rng)
    return session


def _pick_exercise(
    *, enrolment: LearnerEnrolment, skill: Skill, current: Exercise | None = None
) -> Exercise | None:
    """Unsolved before solved, items not yet shown solved as a worked example first, fewest tries
    first, easiest first: never an exam item. Never ``current`` again while the skill has another
    item; one skipped unanswered moves on past it in that order, wrapping round, so skipping walks
    through every item instead of alternating between two."""
    solved = set(
        LearnerAttempt.objects.filter(session__enrolment=enrolment, correct=True).values_list(
            "exercise_id", flat=True
        )
    )
    shown = {
        (checks.get("example") or {}).get("key")
        for checks in TutorMessage.objects.filter(session__enrolment=enrolment, skill=skill).values_list(
            "checked_against", flat=True
        )
    }
    candidates = list(Exercise.objects.trainable().filter(skill=skill))
    tries = dict(
        LearnerAttempt.objects.filter(session__enrolment=enrolment, exercise__skill=skill)
        .values("exercise_id")
        .annotate(n=Count("pk"))
        .values_list("exercise_id", "n")
    )

    def rank(e: Exercise) -> tuple:
        return (e.pk in solved, e.key in shown, tries.get(e.pk, 0), e.difficulty, e.key)

    ordered = sorted(candidates, key=rank)
    if current is not None and any(e.pk != current.pk for e in ordered):
        others = [e for e in ordered if e.pk != current.pk]
        if current.skill_id == skill.pk and not tries.get(current.pk):  # skipped: on past it, wrapping
            others = [e for e in others if rank(e) > rank(current)] + [
                e for e in others if rank(e) <= rank(current)
            ]
        ordered = others
    return ordered[0] if ordered else None


def learner_attempt_submit(*, session: TutoringSession, answer: str) -> LearnerAttempt:
    """Save the answer (its own commit, first), then grade it. An empty answer (also one of only
    spaces or NUL characters) or one over ``MAX_ANSWER_CHARS`` is refused: no attempt, no mastery change."""
    if session.exercise is None:
        raise ValidationError("There is no exercise to answer.")
    answer = answer.replace("\x00", "").strip()
    if not answer:
        raise ValidationError("Type an answer first: an empty answer is not checked.")
    if len(answer) > MAX_ANSWER_CHARS:
        raise ValidationError(f"An answer may be at most {MAX_ANSWER_CHARS} characters.")
    attempt = LearnerAttempt.objects.create(session=session, exercise=session.exercise, answer=answer)
    return learner_attempt_grade(attempt=attempt)


def learner_attempt_grade(*, attempt: LearnerAttempt) -> LearnerAttempt:
    """Grade by rule; a free-text answer the rule rejects goes to the teacher, against the gold solution.

    When the teacher cannot be reached the attempt stays ungraded with ``grade_error`` set (the
    page offers a retry); mastery moves only once an attempt is graded.
    """
    if attempt.correct is not None:
        return attempt
    exercise = attempt.exercise
    result = grade(exercise, attempt.answer)
    correct, reason, graded_by = result.correct, result.reason, LearnerAttempt.GradedBy.RULE
    if not correct and exercise.answer_type == Exercise.AnswerType.TEXT and attempt.answer.strip():
        try:
            verdict = _teacher_verdict(attempt=attempt)
        except LLMError as exc:
            logger.warning("teacher grading of attempt %s failed: %s", attempt.pk, exc)
            attempt.grade_error = TEACHER_UNAVAILABLE
            attempt.save(update_fields=["grade_error"])
            return attempt
        if verdict is not None:
            correct, graded_by = verdict, LearnerAttempt.GradedBy.TEACHER
            reason = (
                "the tutor judged your answer correct"
                if verdict
                else "the tutor judged your answer incorrect"
            )
    with transaction.atomic():
        attempt.correct, attempt.reason, attempt.graded_by = correct, reason[:500], graded_by
        attempt.extracted = (result.extracted or "")[:500]
        attempt.grade_error, attempt.graded_at = "", timezone.now()
        solution_seen = TutorMessage.objects.filter(
            session=attempt.session,
            exercise=exercise,
            kind=TutorMessage.Kind.SOLUTION,
            created_at__lte=attempt.created_at,
        ).exists()
        if not solution_seen:  # an answer copied from the shown solution is no evidence of mastery
            state = learner_skill_record(
                enrolment=attempt.session.enrolment,
                skill=exercise.skill,
                correct=correct,
                now=attempt.graded_at,
            )
            attempt.p_known_after = state.p_known
        attempt.save()
        if not correct:
            tutor_remediation_queue(attempt=attempt)
    return attempt


def _teacher_verdict(*, attempt: LearnerAttempt) -> bool | None:
    exercise = attempt.exercise
    model = course_teacher(course=exercise.skill.course)
    if model is None:
        raise LLMError("tutor", "no teacher model is set up")
    params = model.generation_params().replace(
        max_new_tokens=min(model.max_new_tokens, core.GRADING_MAX_TOKENS)
    )
    conversation = core.grading_prompt(exercise.prompt, exercise.answer, exercise.solution, attempt.answer)
    request = GenerationRequest.of(
        model_id=model.pk,
        conversation=conversation,
        params=params,
        adapter=teacher_adapter_of(model=model, course=exercise.skill.course),
        whole=True,
    )
    return core.parse_verdict(whole_reply(request, max_chars=core.MAX_REPLY_CHARS))


def learner_skill_record(
    *, enrolment: LearnerEnrolment, skill: Skill, correct: bool, now: datetime
) -> LearnerSkillState:
    """BKT update after one graded answer; FSRS review once mastered (the mastering answer is review 1)."""
    params = skill_bkt_params(skill)
    state, _ = LearnerSkillState.objects.select_for_update().get_or_create(
        enrolment=enrolment, skill=skill, defaults={"p_known": params.prior}
    )
    state.p_known = bkt_update(state.p_known, correct, params)
    state.attempts += 1
    state.correct += int(correct)
    review = None
    if state.review:
        review = record_review(ReviewState.from_dict(state.review), correct, now)
    elif is_mastered(state.p_known):
        review = record_review(new_review_state(now), correct, now)
        state.mastered_at = now
    if review is not None:
        state.review, state.review_due = review.to_dict(), review.due
    state.save()
    return state


def teacher_adapter_of(*, model: LanguageModel, course: Course) -> tuple[str, str] | None:
    """(name, folder) of the course's teacher adapter for ``model``, or None for the plain teacher.
    Reads the database only (no model is loaded)."""
    adapter = course.teacher_adapter
    if adapter is None or adapter.base_model_id != model.pk or model.backend == LanguageModel.Backend.OPENAI:
        return None
    return f"adapter-{adapter.pk}", adapter.path


def tutor_explanation_queue(
    *, session: TutoringSession, skill: Skill, rng: random.Random | None = None
) -> list[TutorMessage]:
    """Queue an explanation of ``skill`` tailored to the learner, taught through a worked example (not
    the exercise on their screen); sometimes two, to choose between. With no example to check an
    explanation against, a note says so and the teacher is not asked."""
    ctx = learner_context(enrolment=session.enrolment)
    example = _example_for(skill=skill, exercise=session.exercise)
    if example is None:
        message = _note_create(
            session=session, kind=TutorMessage.Kind.EXPLANATION, skill=skill, text=vetting.NO_EXAMPLE
        )
        return [message]
    prompt = core.explanation_prompt(
        skill.name,
        skill.description,
        ctx,
        example=core.WorkedExample(example.prompt, example.answer, example.solution),
    )
    first = TutorMessage.objects.create(
        session=session,
        kind=TutorMessage.Kind.EXPLANATION,
        skill=skill,
        exercise=session.exercise,
        prompt=prompt,
        checked_against=_checks("explanation", core.explanation_instructions(ctx), example=example),
    )
    messages = [first]
    if core.show_alternatives(rng or random.Random(), settings.TEACHLOOP_TUTOR_ALTERNATIVES_SHARE):
        # The second of a pair is asked for in another style (added to its conversation when claimed).
        instructions = core.explanation_instructions(ctx, style=core.ALTERNATIVE_STYLE)
        messages.append(
            TutorMessage.objects.create(
                session=session,
                kind=TutorMessage.Kind.EXPLANATION,
                skill=skill,
                exercise=session.exercise,
                prompt=prompt,
                alternative_to=first,
                checked_against=_checks("explanation", instructions, example=example),
            )
        )
    for message in messages:
        tutor_message_announce(message, new=True, pending=message is messages[-1])
    return messages


def _note_create(
    *,
    session: TutoringSession,
    kind: str,
    skill: Skill | None,
    text: str,
    source: str = TutorMessage.Source.NOTE,
    label: str = vetting.NOTE_LABEL,
) -> TutorMessage:
    """A finished message that no model wrote (a note, or the course's own text), announced."""
    now = timezone.now()
    message = TutorMessage.objects.create(
        session=session,
        kind=kind,
        skill=skill,
        exercise=session.exercise,
        text=text,
        status=TutorMessage.Status.DONE,
        source=source,
        label=label,
        started_at=now,
        finished_at=now,
    )
    tutor_message_announce(message, new=True)
    return message


def _checks(
    mode: str, instructions: list[str], *, example: core_course.Exercise | None = None
) -> dict[str, Any]:
    """What a reply is checked against, stored on its message (``TutorMessage.checked_against``)."""
    checks: dict[str, Any] = {"mode": mode, "instructions": instructions}
    if example is not None:
        checks["example"] = {**asdict(example), "options": list(example.options)}
    return checks


def _stored_example(checks: dict[str, Any]) -> core_course.Exercise | None:
    data = checks.get("example")
    return core_course.Exercise(**{**data, "options": tuple(data["options"])}) if data else None


def _example_for(*, skill: Skill, exercise: Exercise | None) -> core_course.Exercise | None:
    """A train item of ``skill`` to teach through: never ``exercise`` (the one on the learner's
    screen), nor one with its gold answer; the closest in difficulty, then the easiest. A course
    without such an item gets one written by its pack's expert (never an exam or held-out question),
    else None."""

    def differs(prompt: str, answer: str) -> bool:
        if exercise is None:
            return True
        same_prompt = " ".join(prompt.casefold().split()) == " ".join(exercise.prompt.casefold().split())
        return not same_prompt and normalize_text(answer) != normalize_text(exercise.answer)

    level = exercise.difficulty if exercise is not None else 1
    candidates = [
        e
        for e in Exercise.objects.trainable()
        .filter(skill=skill, split=Exercise.Split.TRAIN)
        .select_related("skill")
        .order_by("difficulty", "key")
        if differs(e.prompt, e.answer) and (exercise is None or e.pk != exercise.pk)
    ]
    if candidates:
        return exercise_to_core(
            exercise=min(candidates, key=lambda e: (abs(e.difficulty - level), e.difficulty))
        )
    expert = PACK_EXPERTS.get(skill.course.expert)
    if expert is None or not expert.can_generate or exercise is None:
        return None
    forbidden = {
        " ".join(p.casefold().split())
        for p in Exercise.objects.filter(skill=skill)
        .exclude(pk__in=Exercise.objects.trainable().values("pk"))
        .values_list("prompt", flat=True)
    }
    written = expert.new_items(
        exercise_to_core(exercise=exercise), 5, random.Random(exercise.pk), avoid=frozenset()
    )
    for item in written:
        if differs(item.prompt, item.answer) and " ".join(item.prompt.casefold().split()) not in forbidden:
            return item
    return None


def _course_expert(*, course: Course, exercises: list[core_course.Exercise]) -> Expert | None:
    """The course's expert, built from only the items a check needs (a pack's needs none)."""
    if course.expert in PACK_EXPERTS:
        return PACK_EXPERTS[course.expert]
    unique = list({" ".join(e.prompt.casefold().split()): e for e in exercises}.values())
    skills = [core_course.Skill(key, key) for key in dict.fromkeys(e.skill for e in unique)]
    try:
        return expert_for(
            core_course.Course(key=course.key, name=course.name, skills=skills, exercises=unique)
        )
    except core_course.CourseError:  # items edited into an invalid state in the admin: no expert
        logger.warning("course %s: its items make no valid course; checking without an expert", course.key)
        return None


def tutor_generation_refusal(*, user_id: int) -> str:
    """ "" when this learner may cause one more teacher call now; otherwise the sentence that says why.

    Limits (settings): ``TEACHLOOP_LEARNER_CONCURRENT_GENERATIONS`` replies pending or being written,
    and ``TEACHLOOP_LEARNER_GENERATIONS_PER_MINUTE`` replies queued or started (a retry starts one
    again) in the last minute, over all the learner's sessions. Notes and shown solutions (the
    course's own text) never count."""
    mine = (
        TutorMessage.objects.filter(session__enrolment__user_id=user_id)
        .exclude(kind=TutorMessage.Kind.SOLUTION)
        .exclude(source=TutorMessage.Source.NOTE)
    )
    busy = mine.filter(status__in=[TutorMessage.Status.PENDING, TutorMessage.Status.STREAMING]).count()
    if busy >= settings.TEACHLOOP_LEARNER_CONCURRENT_GENERATIONS:
        return f"The tutor is still writing {busy} of your replies; ask again once they are done."
    cutoff = timezone.now() - timedelta(minutes=1)
    recent = mine.filter(Q(created_at__gte=cutoff) | Q(started_at__gte=cutoff)).count()
    limit = settings.TEACHLOOP_LEARNER_GENERATIONS_PER_MINUTE
    if recent >= limit:
        return (
            f"You asked the tutor for {recent} replies in the last minute (the limit is {limit}); "
            "try again in a minute. The full solution is always one click away."
        )
    return ""


def tutor_remediation_queue(*, attempt: LearnerAttempt) -> TutorMessage:
    """The tutor's reply to a wrong answer; over the learner's limits, a note that says so instead."""
    refusal = tutor_generation_refusal(user_id=attempt.session.enrolment.user_id)
    if refusal:
        return _note_create(
            session=attempt.session,
            kind=TutorMessage.Kind.REMEDIATION,
            skill=attempt.exercise.skill,
            text=refusal,
        )
    message = TutorMessage.objects.create(
        session=attempt.session,
        kind=TutorMessage.Kind.REMEDIATION,
        skill=attempt.exercise.skill,
        exercise=attempt.exercise,
        attempt=attempt,
    )
    tutor_message_announce(message, new=True, pending=True)
    return message


def tutor_question_ask(*, session: TutoringSession, question: str) -> TutorMessage:
    """Save the learner's free question (first), then queue the teacher's answer."""
    question = question.replace("\x00", "").strip()[:MAX_QUESTION_CHARS]
    if not question:
        raise ValidationError("Type a question first.")
    refusal = tutor_generation_refusal(user_id=session.enrolment.user_id)
    if refusal:
        raise ValidationError(refusal)
    exercise = session.exercise
    ctx = learner_context(enrolment=session.enrolment)
    prompt = core.question_prompt(
        question,
        ctx,
        skill_name=exercise.skill.name if exercise else "",
        exercise=exercise.prompt if exercise else "",
    )
    message = TutorMessage.objects.create(
        session=session,
        kind=TutorMessage.Kind.ANSWER,
        question=question,
        skill=exercise.skill if exercise else None,
        exercise=exercise,
        prompt=prompt,
        checked_against=_checks("answer", core.question_instructions(ctx)),
    )
    tutor_message_announce(message, new=True, pending=True)
    return message


def tutor_solution_show(*, session: TutoringSession) -> TutorMessage:
    """The full gold solution of the current exercise (no teacher call: the course's own solution)."""
    exercise = session.exercise
    if exercise is None:
        raise ValidationError("There is no exercise to solve.")
    text = exercise.solution.strip() or f"Answer: {exercise.answer}"
    if "Answer:" not in text:
        text += f"\nAnswer: {exercise.answer}"
    return _note_create(
        session=session,
        kind=TutorMessage.Kind.SOLUTION,
        skill=exercise.skill,
        text=text,
        source=TutorMessage.Source.EXPERT,
        label=vetting.SOLUTION_LABEL,
    )


def tutor_message_retry(*, message: TutorMessage) -> bool:
    """A failed or stopped message goes back to the queue; False if it was not retryable. Over the
    learner's limits (:func:`tutor_generation_refusal`) it raises ValidationError saying why."""
    refusal = tutor_generation_refusal(user_id=message.session.enrolment.user_id)
    if refusal and message.status in (TutorMessage.Status.FAILED, TutorMessage.Status.STOPPED):
        raise ValidationError(refusal)
    updated = TutorMessage.objects.filter(
        pk=message.pk,
        status__in=[TutorMessage.Status.FAILED, TutorMessage.Status.STOPPED],
    ).update(status=TutorMessage.Status.PENDING, finished_at=None, **_UNWRITTEN)
    if updated:
        message.refresh_from_db()
        tutor_message_announce(message)
    return bool(updated)


def tutor_messages_pending(*, session_id: int) -> list[int]:
    """Pending messages in order; streaming ones abandoned by a dead process go back to pending."""
    cutoff = timezone.now() - timedelta(seconds=STALE_STREAMING_S)
    TutorMessage.objects.filter(
        session_id=session_id, status=TutorMessage.Status.STREAMING, started_at__lt=cutoff
    ).update(status=TutorMessage.Status.PENDING, **_UNWRITTEN)
    return list(
        TutorMessage.objects.filter(session_id=session_id, status=TutorMessage.Status.PENDING)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )


@dataclass
class TutorPlan:
    """What a generator needs outside the database: the model and the conversation(s)."""

    message_id: int
    model: LanguageModel
    course: Course
    conversation: list[dict[str, str]] | None  # None until the decision is made (remediation)
    decision_conversation: list[dict[str, str]] | None = None
    adapter: tuple[str, str] | None = None  # the course's teacher adapter: (name, folder)

    def params(self, *, decision: bool = False):
        params = self.model.generation_params()
        if decision:
            return params.replace(max_new_tokens=min(params.max_new_tokens, core.DECISION_MAX_TOKENS))
        return params

    def request(self, *, decision: bool = False) -> GenerationRequest:
        """What to ask the teacher: the decision (remediation, first) or the reply."""
        conversation = self.decision_conversation if decision else self.conversation
        if conversation is None:
            raise ValueError("the reply's prompt is known only once the decision is made")
        return GenerationRequest.of(
            model_id=self.model.pk,
            conversation=conversation,
            params=self.params(decision=decision),
            adapter=self.adapter,
            whole=decision,
        )


def tutor_message_claim(*, message_id: int) -> TutorPlan | None:
    """Take a pending message for generation (atomically); None if someone else took it or it failed
    at once."""
    claimed = TutorMessage.objects.filter(pk=message_id, status=TutorMessage.Status.PENDING).update(
        status=TutorMessage.Status.STREAMING, started_at=timezone.now(), **_UNWRITTEN
    )
    if not claimed:
        return None
    message = TutorMessage.objects.select_related(
        "session__enrolment__course__teacher_adapter", "attempt__exercise", "alternative_to"
    ).get(pk=message_id)
    course = message.session.enrolment.course
    model = course_teacher(course=course)
    adapter = None if model is None else teacher_adapter_of(model=model, course=course)
    if model is None:
        tutor_message_finish(
            message_id=message_id,
            text="",
            status=TutorMessage.Status.FAILED,
            error="no teacher model is set up (run manage.py bootstrap or register one)",
        )
        message.refresh_from_db()
        tutor_message_announce(message)
        return None
    if message.kind == TutorMessage.Kind.REMEDIATION:
        attempt = message.attempt
        exercise = attempt.exercise
        tries = LearnerAttempt.objects.filter(
            session=message.session, exercise=exercise, created_at__lte=attempt.created_at
        ).count()
        ctx = learner_context(enrolment=message.session.enrolment)
        decision = core.decision_prompt(
            exercise.prompt, attempt.answer, exercise.answer, exercise.solution, ctx, tries=tries
        )
        return TutorPlan(message_id, model, course, None, decision, adapter)
    conversation = [dict(m) for m in message.prompt]
    if message.alternative_to_id:  # the second of a pair is asked for in another style
        conversation[-1]["content"] += f"\n{core.ALTERNATIVE_STYLE}"
    return TutorPlan(message_id, model, course, conversation, adapter=adapter)


def tutor_message_decide(*, plan: TutorPlan, text: str) -> list[dict[str, str]]:
    """Store the teacher's decision on the message (before any reply) and return the reply prompt."""
    message = TutorMessage.objects.select_related("attempt__exercise", "session__enrolment").get(
        pk=plan.message_id
    )
    attempt, exercise = message.attempt, message.attempt.exercise
    enrolment = message.session.enrolment
    tries = LearnerAttempt.objects.filter(
        session=message.session, exercise=exercise, created_at__lte=attempt.created_at
    ).count()
    decision = core.parse_decision(text, attempt.answer, scaffolding=enrolment.scaffolding, tries=tries)
    ctx = learner_context(enrolment=enrolment)
    # How the reply is checked follows the decision: a similar item solved (worked example), the
    # learner's own exercise solved (no scaffolding), else a hint that must not give the answer away.
    example = None
    if decision.strategy == "worked_example":
        example = _example_for(skill=exercise.skill, exercise=exercise)
    mode = "example" if example is not None else "hint" if enrolment.scaffolding else "solution"
    conversation = core.remediation_prompt(
        decision,
        exercise.prompt,
        attempt.answer,
        exercise.answer,
        exercise.solution,
        ctx,
        example=core.WorkedExample(example.prompt, example.answer, example.solution) if example else None,
    )
    message.error_type, message.strategy, message.intention = (
        decision.error_type,
        decision.strategy,
        decision.intention,
    )
    message.decision_parsed, message.prompt = decision.parsed, conversation
    message.checked_against = _checks(mode, core.remediation_instructions(decision, ctx), example=example)
    message.save(
        update_fields=["error_type", "strategy", "intention", "decision_parsed", "prompt", "checked_against"]
    )
    plan.conversation = conversation
    return conversation


def tutor_message_finish(
    *,
    message_id: int,
    text: str,
    status: str,
    error: str = "",
    source: str = "",
    label: str = "",
    failed_check: str = "",
    failed_text: str = "",
) -> None:
    """Store how a message ended. ``text`` is shown to the learner: only a checked reply
    (:func:`tutor_message_vet`) or the course's own text, with ``source`` saying which."""
    TutorMessage.objects.filter(pk=message_id).update(
        text=core.clip(text, core.MAX_REPLY_CHARS) if text.strip() else "",
        status=status,
        error=error[:2000],
        source=source,
        label=label[:80],
        failed_check=failed_check[:500],
        failed_text=core.clip(failed_text, core.MAX_REPLY_CHARS),
        finished_at=timezone.now(),
    )


def tutor_message_vet(*, message_id: int, text: str) -> vetting.Shown:
    """Check the model's whole reply and finish the message with what the learner may see: the reply
    itself if it passes, else the course's text, labelled, with the failure kept for instructors
    (and logged)."""
    message = TutorMessage.objects.select_related(
        "session__enrolment__course", "exercise__skill__course", "skill__course"
    ).get(pk=message_id)
    checks = message.checked_against or {}
    mode = checks.get("mode") or {
        TutorMessage.Kind.EXPLANATION: "explanation",
        TutorMessage.Kind.REMEDIATION: "hint",
    }.get(message.kind, "answer")
    exercise = exercise_to_core(exercise=message.exercise) if message.exercise else None
    example = _stored_example(checks)
    similar = None
    if mode in ("hint", "example", "answer") and message.exercise is not None:
        similar = _example_for(skill=message.exercise.skill, exercise=message.exercise)  # a hint's fallback
    course = message.session.enrolment.course
    shown = vetting.vet(
        mode,
        text,
        exercise=exercise,
        example=example,
        similar=similar,
        expert=_course_expert(course=course, exercises=[e for e in (exercise, example, similar) if e]),
        instructions=checks.get("instructions") or [core.TUTOR_SYSTEM],
        scaffolding=message.session.enrolment.scaffolding,
        second_of_pair=message.alternative_to_id is not None,
    )
    if shown.failure:
        logger.warning(
            "tutor message %s (%s, course %s) failed its checks: %s; shown instead: %s",
            message.pk,
            message.kind,
            course.key,
            shown.failure,
            shown.label,
        )
    tutor_message_finish(
        message_id=message.pk,
        text=shown.text,
        status=TutorMessage.Status.DONE,
        source=shown.source,
        label=shown.label,
        failed_check=shown.failure,
        failed_text=text if shown.failure else "",
    )
    return shown


def tutor_message_requeue(*, message_id: int) -> None:
    """The generator's page went away mid-reply: start again when a page is back."""
    TutorMessage.objects.filter(pk=message_id, status=TutorMessage.Status.STREAMING).update(
        status=TutorMessage.Status.PENDING, **_UNWRITTEN
    )


@transaction.atomic
def tutor_feedback_save(*, message: TutorMessage, user, kind: str, value: str) -> TutorFeedback:
    """Store a rating (replacing an earlier one of the same kind); a choice marks the pair's other one
    rejected."""
    if kind not in TutorFeedback.VALUES or value not in TutorFeedback.VALUES[kind]:
        raise ValidationError(f"unknown rating {kind}={value}")
    if message.status != TutorMessage.Status.DONE:
        raise ValidationError("Only a finished reply can be rated.")
    if message.source != TutorMessage.Source.MODEL:
        raise ValidationError("Only the tutor's own checked replies can be rated.")
    rejected = None
    if kind == TutorFeedback.Kind.CHOICE:
        rejected = message.partner
        if rejected is None:
            raise ValidationError("This explanation has no alternative to choose against.")
        checked = TutorMessage.objects.filter(
            pk=rejected.pk, status=TutorMessage.Status.DONE, source=TutorMessage.Source.MODEL
        )
        if not checked.exists():
            raise ValidationError("The other explanation did not pass its checks: nothing to choose.")
        TutorFeedback.objects.filter(message=rejected, kind=kind).delete()
    feedback, _ = TutorFeedback.objects.update_or_create(
        message=message, kind=kind, defaults={"user": user, "value": value, "rejected": rejected}
    )
    return feedback


def tutoring_training_job_create(*, course: Course, method: str, user):
    """A DPO or KTO job training the teacher's own adapter on the course's learner feedback."""
    from training import jobs  # training never imports tutor; tutor may import training

    if method not in ("dpo", "kto"):
        raise ValidationError("Choose DPO (pairwise choices) or KTO (thumbs).")
    teacher = course_teacher(course=course)
    if teacher is None:
        raise ValidationError("This course has no teacher model to train.")
    records = tutoring_preference_records(course=course, method=method)
    if not records:
        raise ValidationError(f"No {'pairwise choices' if method == 'dpo' else 'ratings'} to train on yet.")
    parent = (
        course.teacher_adapter
        if course.teacher_adapter and course.teacher_adapter.base_model_id == teacher.pk
        else None
    )
    with transaction.atomic():
        dataset = jobs.dataset_create(
            name=f"{course.key}-learner-feedback-{method}",
            method=method,
            records=records,
            user=user,
            source=f"learner feedback on course {course.key}",
        )
        hyper: dict[str, Any] = {"batch_size": 2} if method == "kto" else {}
        return jobs.training_job_create(
            base_model=teacher, dataset=dataset, user=user, parent_adapter=parent, **hyper
        )

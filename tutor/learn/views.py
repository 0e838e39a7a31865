"""Learner-side pages under /learn/: sign-up, courses, tutoring sessions, feedback, instructors.

Learners reach only their own enrolments, sessions, answers and ratings (others are 404, not
403: their existence is not revealed); instructors of a course see its learners read-only;
anonymous users are sent to sign in.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from tutor.learn import live, selectors, services
from tutor.learn.forms import AnswerForm, EnrolForm, FeedbackForm, SignupForm, TrainFromFeedbackForm
from tutor.models import (
    Course,
    LearnerAttempt,
    LearnerEnrolment,
    TutorFeedback,
    TutoringSession,
    TutorMessage,
)


def signup(request: HttpRequest) -> HttpResponse:
    if not settings.TEACHLOOP_OPEN_SIGNUP:
        raise Http404("Sign-up is closed; ask an instructor for an account.")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("learn:courses")
    return render(request, "tutor/learn/signup.html", {"form": form})


@login_required
def course_list(request: HttpRequest) -> HttpResponse:
    enrolments = {e.course_id: e for e in LearnerEnrolment.objects.filter(user=request.user)}
    courses = Course.objects.annotate(n_skills=Count("skills", distinct=True))
    rows = [{"course": c, "enrolment": enrolments.get(c.pk)} for c in courses]
    return render(request, "tutor/learn/course_list.html", {"rows": rows, "form": EnrolForm()})


@login_required
@require_POST
def course_enrol(request: HttpRequest, course_key: str) -> HttpResponse:
    course = get_object_or_404(Course, key=course_key)
    form = EnrolForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose your level.")
        return redirect("learn:courses")
    enrolment = services.learner_enrol(
        user=request.user,
        course=course,
        level=form.cleaned_data["level"],
        scaffolding=form.cleaned_data["scaffolding"],
    )
    session = services.tutoring_session_start(enrolment=enrolment)
    return redirect("learn:session", session_id=session.pk)


@login_required
def course_detail(request: HttpRequest, course_key: str) -> HttpResponse:
    enrolment = selectors.enrolment_with_progress(user=request.user, course_key=course_key)
    course = enrolment.course if enrolment else get_object_or_404(Course, key=course_key)
    instructor = selectors.course_instructed_by(course=course, user=request.user)
    if enrolment is None and not instructor:
        return redirect("learn:courses")
    ctx = {
        "course": course,
        "enrolment": enrolment,
        "instructor": instructor,
        "train_form": TrainFromFeedbackForm(),
    }
    if enrolment is not None:
        ctx.update(
            mastery=selectors.learner_mastery(enrolment=enrolment),
            reviews=selectors.learner_reviews_due(enrolment=enrolment),
            sessions=enrolment.sessions.all()[:20],
        )
    if instructor and request.user.is_staff:
        feedback = TutorFeedback.objects.filter(message__session__enrolment__course=course)
        ctx.update(
            n_choices=feedback.filter(kind="choice").count(), n_thumbs=feedback.filter(kind="helpful").count()
        )
    return render(request, "tutor/learn/course_detail.html", ctx)


@login_required
@require_POST
def session_new(request: HttpRequest, course_key: str) -> HttpResponse:
    enrolment = get_object_or_404(LearnerEnrolment, user=request.user, course__key=course_key)
    session = services.tutoring_session_start(enrolment=enrolment)
    return redirect("learn:session", session_id=session.pk)


def _own_session(request: HttpRequest, session_id: int) -> TutoringSession:
    """The learner's own session (only they may act in it)."""
    return get_object_or_404(
        TutoringSession.objects.select_related("enrolment__course", "exercise__skill"),
        pk=session_id,
        enrolment__user=request.user,
    )


def _exercise_ctx(session: TutoringSession, **extra) -> dict:
    enrolment = session.enrolment
    return {
        "session": session,
        "exercise": session.exercise,
        "kept_answer": "",
        **extra,
        "mastery": selectors.learner_mastery(enrolment=enrolment),
        "reviews": selectors.learner_reviews_due(enrolment=enrolment),
    }


@login_required
def session_detail(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(selectors.tutoring_sessions_visible_to(user=request.user), pk=session_id)
    readonly = session.enrolment.user_id != request.user.pk  # an instructor looking on
    tutor_messages = [
        live.tutor_message_context(message=m, readonly=readonly)
        for m in session.messages.select_related("alternative_to", "skill", "attempt").prefetch_related(
            "feedback"
        )
    ]
    ctx = _exercise_ctx(
        session,
        readonly=readonly,
        # Not ``messages``: that is Django's flash messages, which base.html shows.
        tutor_messages=tutor_messages,
        course=session.enrolment.course,
        attempts=session.attempts.select_related("exercise") if readonly else None,
    )
    return render(request, "tutor/learn/session.html", ctx)


def _exercise_response(request: HttpRequest, session: TutoringSession, **extra) -> HttpResponse:
    """The exercise card, with the mastery chart and due reviews swapped out of band."""
    return render(request, "tutor/learn/partials/exercise_response.html", _exercise_ctx(session, **extra))


@login_required
@require_POST
def session_answer(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _own_session(request, session_id)
    form = AnswerForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError([e for errors in form.errors.values() for e in errors])
        attempt = services.learner_attempt_submit(session=session, answer=form.cleaned_data["answer"])
    except ValidationError as exc:  # said in the card, where the learner is looking; nothing saved
        kept = str(request.POST.get("answer", "")).replace("\x00", "")[: services.MAX_ANSWER_CHARS]
        return _exercise_response(request, session, card_error=" ".join(exc.messages), kept_answer=kept)
    # A wrong or ungraded answer stays in the box: the learner fixes it rather than retyping it.
    kept = "" if attempt.correct else attempt.answer
    return _exercise_response(request, session, attempt=attempt, kept_answer=kept)


@login_required
@require_POST
def attempt_regrade(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = get_object_or_404(
        LearnerAttempt.objects.select_related("session__enrolment", "exercise__skill"),
        pk=attempt_id,
        session__enrolment__user=request.user,
    )
    attempt = services.learner_attempt_grade(attempt=attempt)
    return _exercise_response(
        request, attempt.session, attempt=attempt, kept_answer="" if attempt.correct else attempt.answer
    )


@login_required
@require_POST
def session_next(request: HttpRequest, session_id: int) -> HttpResponse:
    session = services.tutoring_session_next(session=_own_session(request, session_id))
    return _exercise_response(request, session)


@login_required
@require_POST
def session_solution(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _own_session(request, session_id)
    try:
        services.tutor_solution_show(session=session)
    except ValidationError as exc:  # said in the card, where the learner is looking
        return _exercise_response(request, session, card_error=" ".join(exc.messages))
    return _exercise_response(request, session, solution_shown=True)


@login_required
@require_POST
def message_feedback(request: HttpRequest, message_id: int) -> HttpResponse:
    message = get_object_or_404(
        TutorMessage.objects.select_related("alternative_to"),
        pk=message_id,
        session__enrolment__user=request.user,
    )
    form = FeedbackForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Unknown rating.", status=400)
    try:
        services.tutor_feedback_save(message=message, user=request.user, **form.cleaned_data)
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=400)
    ctx = live.tutor_message_context(message=message)
    partner = message.partner
    partner_ctx = live.tutor_message_context(message=partner) if partner else None
    return render(
        request, "tutor/learn/partials/feedback_response.html", {**ctx, "saved": True, "partner": partner_ctx}
    )


@login_required
def course_learners(request: HttpRequest, course_key: str) -> HttpResponse:
    """Instructors: the course's learners, their mastery, the tutor's decisions on their mistakes, and
    the replies that failed their checks (with the model's text the learner never saw)."""
    course = get_object_or_404(Course, key=course_key)
    if not selectors.course_instructed_by(course=course, user=request.user):
        raise Http404("No such course among yours.")
    enrolments = course.enrolments.select_related("user").annotate(
        n_attempts=Count("sessions__attempts", distinct=True),
        n_correct=Count("sessions__attempts", filter=Q(sessions__attempts__correct=True), distinct=True),
    )
    learners = [
        {"enrolment": e, "mastery": selectors.learner_mastery(enrolment=e), "sessions": e.sessions.all()[:5]}
        for e in enrolments
    ]
    decisions = (
        TutorMessage.objects.filter(session__enrolment__course=course, kind=TutorMessage.Kind.REMEDIATION)
        .select_related("session__enrolment__user", "attempt", "exercise")
        .prefetch_related("feedback")
        .order_by("-created_at")[:200]
    )
    failed = (
        TutorMessage.objects.filter(session__enrolment__course=course)
        .exclude(failed_check="")
        .select_related("session__enrolment__user", "exercise")
        .order_by("-created_at")[:200]
    )
    return render(
        request,
        "tutor/learn/course_learners.html",
        {"course": course, "learners": learners, "decisions": decisions, "failed": failed},
    )


@login_required
@require_POST
def course_train(request: HttpRequest, course_key: str) -> HttpResponse:
    """Staff instructors: turn the course's learner feedback into a DPO/KTO job for the teacher's adapter."""
    course = get_object_or_404(Course, key=course_key)
    if not (request.user.is_staff and selectors.course_instructed_by(course=course, user=request.user)):
        raise Http404("No such course among yours.")
    form = TrainFromFeedbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose DPO or KTO.")
        return redirect("learn:course", course_key=course.key)
    try:
        job = services.tutoring_training_job_create(
            course=course, method=form.cleaned_data["method"], user=request.user
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("learn:course", course_key=course.key)
    messages.success(
        request,
        f"Training job {job.pk} queued: {job.dataset.record_count} "
        f"{job.method.upper()} records from learner feedback.",
    )
    return redirect("training:job", job_id=job.pk)

"""Human learners: enrolments, mastery per skill, tutoring sessions, answers, tutor messages, ratings."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tutor.models.courses import Course, Exercise, Skill


class LearnerEnrolment(models.Model):
    """A learner taking a course, with the level they stated and their tutoring preference."""

    class Level(models.TextChoices):
        BEGINNER = "beginner"
        INTERMEDIATE = "intermediate"
        ADVANCED = "advanced"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolments")
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrolments")
    level = models.CharField(max_length=20, choices=Level.choices, default=Level.BEGINNER)
    scaffolding = models.BooleanField(default=True, help_text="hints and guiding questions before answers")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["course", "user"]
        constraints = [models.UniqueConstraint(fields=["user", "course"], name="one_enrolment_per_course")]

    def __str__(self) -> str:
        return f"{self.user} in {self.course}"


class LearnerSkillState(models.Model):
    """Mastery (BKT P(known)) and the FSRS review state of one skill for one learner."""

    enrolment = models.ForeignKey(LearnerEnrolment, on_delete=models.CASCADE, related_name="skill_states")
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE, related_name="+")
    p_known = models.FloatField()
    attempts = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)
    review = models.JSONField(
        null=True, blank=True, help_text="tutor.core.learn.review.ReviewState; empty until mastered"
    )
    review_due = models.DateTimeField(null=True, blank=True, db_index=True)
    mastered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["skill__order", "skill__key"]
        constraints = [
            models.UniqueConstraint(fields=["enrolment", "skill"], name="one_state_per_learner_skill")
        ]

    def __str__(self) -> str:
        return f"{self.skill} for {self.enrolment}"


class TutoringSession(models.Model):
    enrolment = models.ForeignKey(LearnerEnrolment, on_delete=models.CASCADE, related_name="sessions")
    exercise = models.ForeignKey(
        Exercise,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the exercise on the learner's screen",
    )
    reason = models.CharField(max_length=10, blank=True, help_text="why that skill: new, weakest or review")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"session {self.pk} of {self.enrolment}"


class LearnerAttempt(models.Model):
    """One answer, saved before it is graded; ``correct`` stays empty until grading succeeds."""

    class GradedBy(models.TextChoices):
        RULE = "rule"
        TEACHER = "teacher"

    session = models.ForeignKey(TutoringSession, on_delete=models.CASCADE, related_name="attempts")
    exercise = models.ForeignKey(Exercise, on_delete=models.CASCADE, related_name="+")
    answer = models.TextField(blank=True)
    correct = models.BooleanField(null=True)
    extracted = models.CharField(max_length=500, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    graded_by = models.CharField(max_length=10, choices=GradedBy.choices, blank=True)
    grade_error = models.TextField(blank=True, help_text="why the teacher could not grade it (retry)")
    p_known_after = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    graded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"answer {self.pk} to {self.exercise}"


class TutorMessage(models.Model):
    """What the tutor says in a session: an explanation, the reply to a mistake or to a question,
    or the full solution. The remediation decision is stored before the reply is written.

    The model's reply is checked before anyone reads it (``tutor.core.learn.vetting``): ``text`` is
    what the learner sees and ``source`` says who wrote it; a reply that failed its checks keeps the
    reason and the model's text in ``failed_check`` and ``failed_text``, for instructors only.
    """

    class Kind(models.TextChoices):
        EXPLANATION = "explanation"
        REMEDIATION = "remediation", "reply to a mistake"
        ANSWER = "answer", "answer to a question"
        SOLUTION = "solution", "full solution"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        DONE = "done"
        STOPPED = "stopped"
        FAILED = "failed"

    class Source(models.TextChoices):
        MODEL = "model", "the tutor model (passed its checks)"
        EXPERT = "expert", "the course (its expert or gold solutions)"
        NOTE = "note", "a note (nothing checked to show)"

    session = models.ForeignKey(TutoringSession, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    skill = models.ForeignKey(Skill, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    exercise = models.ForeignKey(Exercise, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempt = models.ForeignKey(
        LearnerAttempt, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    question = models.TextField(blank=True, help_text="the learner's free question")
    alternative_to = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alternatives",
        help_text="the other explanation of a pair the learner chooses between",
    )
    prompt = models.JSONField(default=list, blank=True, help_text="the conversation a preference record uses")
    text = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    error_type = models.CharField(max_length=20, blank=True)
    strategy = models.CharField(max_length=20, blank=True)
    intention = models.CharField(max_length=300, blank=True)
    decision_parsed = models.BooleanField(
        null=True, help_text="False: the teacher's decision was unusable and the fallback was used"
    )
    checked_against = models.JSONField(
        default=dict,
        blank=True,
        help_text="what the reply is checked against: its mode, the worked example and the instructions "
        "it must not repeat",
    )
    source = models.CharField(
        max_length=10,
        choices=Source.choices,
        blank=True,
        help_text="who wrote the text shown; empty until the reply is checked",
    )
    label = models.CharField(
        max_length=80, blank=True, help_text="how the course's text is labelled for the learner"
    )
    failed_check = models.CharField(
        max_length=500, blank=True, help_text="why the model's reply was not shown (instructors only)"
    )
    failed_text = models.TextField(blank=True, help_text="the model's reply that failed (instructors only)")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk}"

    @property
    def partner(self) -> TutorMessage | None:
        """The other explanation of a pair, if this is one."""
        if self.alternative_to_id:
            return self.alternative_to
        return self.alternatives.first()


class TutorFeedback(models.Model):
    """A learner's rating of a tutor message; one per message and kind (a new rating replaces it)."""

    class Kind(models.TextChoices):
        HELPFUL = "helpful"
        DIFFICULTY = "difficulty"
        CHOICE = "choice", "pairwise choice"

    VALUES = {
        "helpful": ("helpful", "not_helpful"),
        "difficulty": ("too_easy", "right", "too_hard"),
        "choice": ("chosen",),
    }

    message = models.ForeignKey(TutorMessage, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=12)
    rejected = models.ForeignKey(
        TutorMessage,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="choice only: the alternative not chosen",
    )
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["message", "kind"], name="one_rating_per_message_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind}={self.value} on {self.message}"

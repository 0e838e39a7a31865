from __future__ import annotations

from django.conf import settings
from django.db import models

from training.models import LanguageModel


class Course(models.Model):
    """Skills with prerequisites and exercises with checkable answers."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    teacher = models.ForeignKey(LanguageModel, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="courses", help_text="Empty: the default teacher.")
    source = models.CharField(max_length=300, blank=True, help_text="pack name, upload or file it came from")
    # Learner-side (issue 5): who teaches it, and the teacher's own LoRA adapter trained on learners' feedback.
    instructors = models.ManyToManyField("auth.User", blank=True, related_name="instructed_courses",
                                         help_text="They see this course's learners and the tutor's decisions.")
    teacher_adapter = models.ForeignKey("training.Adapter", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+", help_text="The teacher's own LoRA adapter used in "
                                        "tutoring sessions (local teachers only); empty: the plain teacher.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Skill(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="skills")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    prerequisites = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="unlocks")
    order = models.PositiveIntegerField(default=0, help_text="position in the course as imported")
    bkt_params = models.JSONField(default=dict, blank=True,
                                  help_text='Knowledge-tracing probabilities, e.g. {"prior": 0.2, "learn": 0.15, '
                                  '"guess": 0.2, "slip": 0.1}; missing ones take these defaults.')

    class Meta:
        ordering = ["course", "order", "key"]
        constraints = [models.UniqueConstraint(fields=["course", "key"], name="skill_key_per_course")]

    def __str__(self) -> str:
        return self.name


class ExerciseQuerySet(models.QuerySet):
    def trainable(self) -> ExerciseQuerySet:
        """Items that may feed training, explanations or generated data: never the exam split."""
        return self.exclude(split=Exercise.Split.EXAM)


class Exercise(models.Model):
    class AnswerType(models.TextChoices):
        NUMBER = "number"
        TEXT = "text"
        CHOICE = "choice", "multiple choice"

    class Split(models.TextChoices):
        TRAIN = "train"
        PROBE = "probe"
        EXAM = "exam"

    skill = models.ForeignKey(Skill, on_delete=models.CASCADE, related_name="exercises")
    key = models.CharField(max_length=100)
    prompt = models.TextField()
    answer = models.CharField(max_length=500)
    answer_type = models.CharField(max_length=10, choices=AnswerType.choices, default=AnswerType.NUMBER)
    options = models.JSONField(default=list, blank=True)
    solution = models.TextField(blank=True, help_text="gold worked solution")
    difficulty = models.PositiveSmallIntegerField(default=1)
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.TRAIN, db_index=True)

    objects = ExerciseQuerySet.as_manager()

    class Meta:
        ordering = ["skill", "difficulty", "key"]
        constraints = [models.UniqueConstraint(fields=["skill", "key"], name="exercise_key_per_skill")]

    def __str__(self) -> str:
        return f"{self.skill.key}/{self.key}"


class TeachingRun(models.Model):
    """Rounds of diagnose → plan → explain → score → generate → build data → train → re-examine.

    The full, resumable state lives in a JSON file under the data directory (``state_path``);
    this row holds what pages and tables need: status and where the run is; its ``rounds`` hold
    the per-round results and training jobs.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="runs")
    student = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="runs_as_student")
    teacher = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="runs_as_teacher")
    config = models.JSONField(default=dict)
    train_config = models.JSONField(default=dict, help_text="hyper-parameters of each round's training job")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    current_round = models.PositiveIntegerField(default=0)
    current_step = models.CharField(max_length=30, blank=True)
    adapter_path = models.CharField(max_length=1000, blank=True)
    last_error = models.TextField(blank=True)
    # A run started from the web runs in a worker, like a training job: claimed with a lease,
    # kept alive by heartbeats, re-queued (to resume) or failed when its worker dies.
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running it")
    lease = models.CharField(max_length=64, blank=True, help_text="token of the attempt that owns the run")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    feedback_jobs = models.JSONField(default=list, blank=True,
                                     help_text="training jobs started from people's ratings (fine-tune now)")
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk}: {self.student} taught by {self.teacher} on {self.course}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)

    @property
    def latest_round(self) -> Round | None:
        """The last round with an exam result, for one-line summaries (prefetch ``rounds`` for lists)."""
        examined = [r for r in self.rounds.all() if r.accuracy is not None]
        return examined[-1] if examined else None


class Round(models.Model):
    """One round of a teaching run, mirrored from the run's state file for pages, tables and the admin.

    The summary fields are overwritten by every sync (``tutor.teaching.run_rounds_sync``); keys of
    the loop's round summary without a column land in ``extra``, so a new measurement reaches the
    row (and the admin) without a migration. ``training_job`` is set when the round's job is made,
    before the round finishes, so a resumed run finds it.
    """

    run = models.ForeignKey(TeachingRun, on_delete=models.CASCADE, related_name="rounds")
    index = models.PositiveIntegerField(help_text="0-based; pages show index + 1")
    done_steps = models.JSONField(default=list, blank=True)
    probe = models.JSONField(default=dict, blank=True, help_text="probe accuracy per skill (diagnose)")
    exam = models.JSONField(default=dict, blank=True, help_text="exam accuracy per skill (re-examine)")
    base = models.JSONField(default=dict, blank=True, help_text="the base model's exam accuracy per skill")
    accuracy = models.FloatField(null=True, blank=True, help_text="exam accuracy over all skills")
    base_accuracy = models.FloatField(null=True, blank=True)
    vs_base = models.FloatField(null=True, blank=True)
    vs_previous = models.FloatField(null=True, blank=True)
    agreement = models.FloatField(null=True, blank=True, help_text="how often the student's exam answer is the "
                                  "teacher's")
    teacher_accuracy = models.FloatField(null=True, blank=True)
    explained = models.PositiveIntegerField(default=0)
    dropped_explanations = models.PositiveIntegerField(default=0, help_text="dropped by the answer check")
    helped = models.PositiveIntegerField(default=0)
    generated_kept = models.PositiveIntegerField(default=0)
    sft_records = models.PositiveIntegerField(default=0)
    warnings = models.JSONField(default=list, blank=True)
    train_note = models.TextField(blank=True)
    adapter_path = models.CharField(max_length=1000, blank=True, help_text="the student's adapter after this round")
    training_job = models.ForeignKey("training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="teaching_rounds")
    extra = models.JSONField(default=dict, blank=True, help_text="further summary keys, e.g. the forgetting probe")

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="round_index_per_run")]

    def __str__(self) -> str:
        return f"run {self.run_id} round {self.index + 1}"


class RunExplanation(models.Model):
    """One explanation of a teaching run, mirrored from the run's state file for pages and ratings.

    The state-derived fields are overwritten by every sync (the state file is the loop's memory);
    ``rating`` and ``edited_text`` belong to people and are never touched by a sync. The loop reads
    them back before each step (``run_teaching(ratings=..., edits=...)``).
    """

    run = models.ForeignKey(TeachingRun, on_delete=models.CASCADE, related_name="explanations")
    key = models.CharField(max_length=200, help_text="the explanation's id in the run's state")
    round = models.PositiveIntegerField()
    item = models.CharField(max_length=100)
    skill = models.CharField(max_length=100)
    split = models.CharField(max_length=10)
    question = models.TextField(blank=True)
    gold_answer = models.CharField(max_length=500, blank=True)
    student_answer = models.TextField(blank=True, help_text="the student's answer before the explanation")
    answer_after = models.TextField(blank=True, help_text="the student's answer with the explanation in context")
    text = models.TextField(help_text="the teacher's explanation, as written (model output: untrusted)")
    teacher_answer = models.CharField(max_length=500, blank=True)
    passed_gate = models.BooleanField(default=False)
    gate_reason = models.TextField(blank=True)
    quotes_exam = models.BooleanField(default=False)
    before = models.JSONField(default=list, blank=True, help_text="correct before: the item, then its siblings")
    after = models.JSONField(default=list, blank=True)
    siblings = models.JSONField(default=list, blank=True)
    score = models.FloatField(null=True, blank=True)
    rating = models.BooleanField(null=True, blank=True, help_text="a person's thumbs up (true) or down (false)")
    edited_text = models.TextField(blank=True, help_text="a person's rewrite; it replaces the text in training")
    rated_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "round", "pk"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="explanation_key_per_run")]

    def __str__(self) -> str:
        return f"run {self.run_id} {self.key}"

    @property
    def final_text(self) -> str:
        return self.edited_text if self.edited_text.strip() else self.text

    @property
    def correct_before(self) -> int:
        return sum(bool(v) for v in self.before)

    @property
    def correct_after(self) -> int:
        return sum(bool(v) for v in self.after)


# ---------------------------------------------------------------- human learners (issue 5)


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
    review = models.JSONField(null=True, blank=True, help_text="tutor.core.review.ReviewState; empty until mastered")
    review_due = models.DateTimeField(null=True, blank=True, db_index=True)
    mastered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["skill__order", "skill__key"]
        constraints = [models.UniqueConstraint(fields=["enrolment", "skill"], name="one_state_per_learner_skill")]


class TutoringSession(models.Model):
    enrolment = models.ForeignKey(LearnerEnrolment, on_delete=models.CASCADE, related_name="sessions")
    exercise = models.ForeignKey(Exercise, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="the exercise on the learner's screen")
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


class TutorMessage(models.Model):
    """What the tutor says in a session: an explanation, the reply to a mistake or to a question,
    or the full solution. The remediation decision is stored before the reply is written."""

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

    session = models.ForeignKey(TutoringSession, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    skill = models.ForeignKey(Skill, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    exercise = models.ForeignKey(Exercise, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempt = models.ForeignKey(LearnerAttempt, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="messages")
    question = models.TextField(blank=True, help_text="the learner's free question")
    alternative_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE,
                                       related_name="alternatives",
                                       help_text="the other explanation of a pair the learner chooses between")
    prompt = models.JSONField(default=list, blank=True, help_text="the conversation a preference record uses")
    text = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    error_type = models.CharField(max_length=20, blank=True)
    strategy = models.CharField(max_length=20, blank=True)
    intention = models.CharField(max_length=300, blank=True)
    decision_parsed = models.BooleanField(null=True, help_text="False: the teacher's decision was unusable "
                                          "and the fallback was used")
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

    VALUES = {"helpful": ("helpful", "not_helpful"), "difficulty": ("too_easy", "right", "too_hard"),
              "choice": ("chosen",)}

    message = models.ForeignKey(TutorMessage, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=12)
    rejected = models.ForeignKey(TutorMessage, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                 help_text="choice only: the alternative not chosen")
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["message", "kind"], name="one_rating_per_message_kind")]

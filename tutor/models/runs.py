"""Teaching runs of student models, their rounds and explanations."""

from __future__ import annotations

from django.db import models

from training.models import LanguageModel
from tutor.models.courses import Course


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
    feedback_jobs = models.JSONField(
        default=list, blank=True, help_text="training jobs started from people's ratings (fine-tune now)"
    )
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

    The summary fields are overwritten by every sync (``tutor.runs.services.teaching_run_rounds_sync``);
    keys of
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
    agreement = models.FloatField(
        null=True, blank=True, help_text="how often the student's exam answer is the teacher's"
    )
    teacher_accuracy = models.FloatField(null=True, blank=True)
    explained = models.PositiveIntegerField(default=0)
    dropped_explanations = models.PositiveIntegerField(default=0, help_text="dropped by the answer check")
    helped = models.PositiveIntegerField(default=0)
    generated_kept = models.PositiveIntegerField(default=0)
    sft_records = models.PositiveIntegerField(default=0)
    warnings = models.JSONField(default=list, blank=True)
    train_note = models.TextField(blank=True)
    adapter_path = models.CharField(
        max_length=1000, blank=True, help_text="the student's adapter after this round"
    )
    job_tries = models.JSONField(
        default=dict,
        blank=True,
        help_text="the training job of each try of the round (retries after a rejection)",
    )
    training_job = models.ForeignKey(
        "training.TrainingJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="teaching_rounds",
    )
    extra = models.JSONField(
        default=dict, blank=True, help_text="further summary keys, e.g. the forgetting probe"
    )

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
    answer_after = models.TextField(
        blank=True, help_text="the student's answer with the explanation in context"
    )
    text = models.TextField(help_text="the teacher's explanation, as written (model output: untrusted)")
    teacher_answer = models.CharField(max_length=500, blank=True)
    passed_gate = models.BooleanField(default=False)
    gate_reason = models.TextField(blank=True)
    quotes_exam = models.BooleanField(default=False)
    before = models.JSONField(
        default=list, blank=True, help_text="correct before: the item, then its siblings"
    )
    after = models.JSONField(default=list, blank=True)
    siblings = models.JSONField(default=list, blank=True)
    score = models.FloatField(null=True, blank=True)
    source = models.CharField(
        max_length=10,
        default="model",
        help_text="model: the teacher wrote it; expert: the course's expert did",
    )
    model_text = models.TextField(
        blank=True, help_text="with an expert's text: the teacher's failed candidate"
    )
    candidates = models.PositiveSmallIntegerField(default=1)
    candidates_passed = models.PositiveSmallIntegerField(default=0)
    rating = models.BooleanField(
        null=True, blank=True, help_text="a person's thumbs up (true) or down (false)"
    )
    edited_text = models.TextField(
        blank=True, help_text="a person's rewrite; it replaces the text in training"
    )
    rated_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
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

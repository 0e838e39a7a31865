from __future__ import annotations

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
    this row holds what pages and tables need: status, where the run is, per-round results.
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
    results = models.JSONField(default=list, help_text="per round: probe and exam accuracy per skill, warnings")
    adapter_path = models.CharField(max_length=1000, blank=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk}: {self.student} taught by {self.teacher} on {self.course}"

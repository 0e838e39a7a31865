"""Courses: skills with prerequisites and exercises with checkable answers."""

from __future__ import annotations

from django.db import models

from training.models import LanguageModel


class Course(models.Model):
    """Skills with prerequisites and exercises with checkable answers."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    teacher = models.ForeignKey(
        LanguageModel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="courses",
        help_text="Empty: the default teacher.",
    )
    source = models.CharField(max_length=300, blank=True, help_text="pack name, upload or file it came from")
    expert = models.CharField(
        max_length=30,
        blank=True,
        choices=[
            ("", "none (its gold solutions, if it has any)"),
            ("arithmetic", "arithmetic"),
            ("counting", "counting"),
        ],
        help_text="The course's own knowledge: it checks, corrects and completes what a teacher writes.",
    )
    # Learner-side (issue 5): who teaches it, and the teacher's own LoRA adapter trained on learners'
    # feedback.
    instructors = models.ManyToManyField(
        "auth.User",
        blank=True,
        related_name="instructed_courses",
        help_text="They see this course's learners and the tutor's decisions.",
    )
    teacher_adapter = models.ForeignKey(
        "training.Adapter",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The teacher's own LoRA adapter used in "
        "tutoring sessions (local teachers only); empty: the plain teacher.",
    )
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
    keep = models.BooleanField(
        default=False,
        help_text="A skill to keep, not to teach: examined every round and replayed, never planned.",
    )
    order = models.PositiveIntegerField(default=0, help_text="position in the course as imported")
    bkt_params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Knowledge-tracing probabilities, e.g. {"prior": 0.2, "learn": 0.15, '
        '"guess": 0.2, "slip": 0.1}; missing ones take these defaults.',
    )

    class Meta:
        ordering = ["course", "order", "key"]
        constraints = [models.UniqueConstraint(fields=["course", "key"], name="skill_key_per_course")]

    def __str__(self) -> str:
        return self.name


class ExerciseQuerySet(models.QuerySet):
    def trainable(self) -> ExerciseQuerySet:
        """Items that may feed training, explanations or generated data: never the exam split, never
        an item asked in a held-out phrasing."""
        return self.exclude(split=Exercise.Split.EXAM).exclude(held_out=True)


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
    phrasing = models.CharField(max_length=60, blank=True, help_text="the wording the question is asked in")
    held_out = models.BooleanField(
        default=False, help_text="A wording kept out of training: probe and exam only, never trained on."
    )

    objects = ExerciseQuerySet.as_manager()

    class Meta:
        ordering = ["skill", "difficulty", "key"]
        constraints = [models.UniqueConstraint(fields=["skill", "key"], name="exercise_key_per_skill")]

    def __str__(self) -> str:
        return f"{self.skill.key}/{self.key}"

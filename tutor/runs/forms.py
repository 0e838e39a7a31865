"""Forms of the teaching-run pages; defaults and help come from ``RunConfig`` and ``TrainConfig``."""

from __future__ import annotations

from typing import Any

from django import forms

from training.core.config import MAX_SEED, TrainConfig
from training.core.fields import setting_default, setting_help
from training.forms import precision_field
from training.models import LanguageModel
from tutor.core.runs.state import ACCEPTANCE, CHOICE_SCORING, PLANS, ROUND_TRAINING, SCHEDULES, RunConfig
from tutor.models import Course


def _run(name: str) -> Any:
    return setting_default(RunConfig, name)


def _help(config: type, name: str) -> str:
    text = setting_help(config, name)
    return text[0].upper() + text[1:] + "."


LOCAL = LanguageModel.objects.filter(enabled=True).exclude(backend=LanguageModel.Backend.OPENAI)


class TeachingRunForm(forms.Form):
    """Settings of a new run; checked by the same rules the loop and the trainer use."""

    course = forms.ModelChoiceField(queryset=Course.objects.all())
    student = forms.ModelChoiceField(
        queryset=LOCAL, help_text="A local model: its LoRA adapters are trained here."
    )
    teacher = forms.ModelChoiceField(queryset=LanguageModel.objects.filter(enabled=True))
    rounds = forms.IntegerField(
        initial=_run("rounds"), min_value=1, max_value=20, help_text=_help(RunConfig, "rounds")
    )
    plan = forms.ChoiceField(
        choices=[(p, p) for p in PLANS], initial=_run("plan"), help_text=_help(RunConfig, "plan")
    )
    plan_budget = forms.IntegerField(
        initial=_run("plan_budget"),
        min_value=0,
        max_value=10_000,
        label="Items practised per round",
        help_text=_help(RunConfig, "plan_budget"),
    )
    explain_budget = forms.IntegerField(
        initial=_run("explain_budget"),
        min_value=0,
        max_value=1_000,
        label="Explanations per round",
        help_text=_help(RunConfig, "explain_budget"),
    )
    generate_budget = forms.IntegerField(
        initial=_run("generate_budget"),
        min_value=0,
        max_value=1_000,
        label="Items to generate from per round",
        help_text=_help(RunConfig, "generate_budget"),
    )
    generate_k = forms.IntegerField(
        initial=_run("generate_k"),
        min_value=0,
        max_value=20,
        label="New items per source",
        help_text=_help(RunConfig, "generate_k"),
    )
    seed = forms.IntegerField(
        initial=_run("seed"), min_value=0, max_value=MAX_SEED, help_text=_help(RunConfig, "seed")
    )
    choice_scoring = forms.ChoiceField(
        choices=[(c, c) for c in CHOICE_SCORING],
        initial=_run("choice_scoring"),
        required=False,
        label="Multiple choice answered by",
        help_text=_help(RunConfig, "choice_scoring"),
    )
    expert = forms.BooleanField(
        initial=_run("expert"),
        required=False,
        label="Use the course's expert",
        help_text=_help(RunConfig, "expert"),
    )
    explain_samples = forms.IntegerField(
        initial=_run("explain_samples"),
        min_value=1,
        max_value=8,
        required=False,
        label="Candidates per explanation",
        help_text=_help(RunConfig, "explain_samples"),
    )
    teacher_min_pass = forms.FloatField(
        initial=_run("teacher_min_pass"),
        min_value=0.0,
        max_value=1.0,
        required=False,
        label="Teacher's least pass rate",
        help_text=_help(RunConfig, "teacher_min_pass"),
    )
    keep_share = forms.FloatField(
        initial=_run("keep_share"),
        min_value=0.0,
        max_value=0.9,
        required=False,
        label="Keep-set share",
        help_text=_help(RunConfig, "keep_share"),
    )
    schedule = forms.ChoiceField(
        choices=[(s, s) for s in SCHEDULES],
        initial=_run("schedule"),
        required=False,
        help_text=_help(RunConfig, "schedule"),
    )
    acceptance = forms.ChoiceField(
        choices=[(a, a) for a in ACCEPTANCE],
        initial=_run("acceptance"),
        required=False,
        help_text=_help(RunConfig, "acceptance"),
    )
    round_tries = forms.IntegerField(
        initial=_run("round_tries"),
        min_value=1,
        max_value=5,
        required=False,
        label="Tries per round",
        help_text=_help(RunConfig, "round_tries"),
    )
    continue_lr = forms.FloatField(
        initial=_run("continue_lr"),
        min_value=0.01,
        max_value=1.0,
        required=False,
        label="Learning-rate scale of a continued round",
        help_text=_help(RunConfig, "continue_lr"),
    )
    train = forms.BooleanField(initial=True, required=False, label="Fine-tune the student each round")
    max_steps = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=100_000,
        label="Training steps per round",
        help_text="Optimizer steps per round; empty: one pass over the round's records.",
    )
    learning_rate = forms.FloatField(
        initial=ROUND_TRAINING["learning_rate"],
        min_value=1e-7,
        max_value=1.0,
        help_text=_help(TrainConfig, "learning_rate"),
    )
    lora_r = forms.IntegerField(
        initial=ROUND_TRAINING["lora_r"],
        min_value=1,
        max_value=512,
        label="LoRA rank",
        help_text=_help(TrainConfig, "lora_r"),
    )
    batch_size = forms.IntegerField(
        initial=ROUND_TRAINING["batch_size"],
        min_value=1,
        max_value=512,
        help_text=_help(TrainConfig, "batch_size"),
    )

    precision = precision_field()

    BUDGET_FIELDS = (
        "rounds",
        "plan",
        "plan_budget",
        "explain_budget",
        "generate_budget",
        "generate_k",
        "seed",
        "choice_scoring",
    )
    RULE_FIELDS = (
        "expert",
        "explain_samples",
        "teacher_min_pass",
        "keep_share",
        "schedule",
        "acceptance",
        "round_tries",
        "continue_lr",
    )
    RUN_FIELDS = BUDGET_FIELDS + RULE_FIELDS
    TRAIN_FIELDS = ("max_steps", "learning_rate", "lora_r", "batch_size", "precision")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        courses = self.fields["course"].queryset  # type: ignore[attr-defined]
        if not self.initial.get("course") and courses.count() == 1:
            self.initial["course"] = courses.get().pk  # the only course, chosen already

    def missing(self) -> list[tuple[str, str, str]]:
        """What has to exist before a run can start: (what, the command that makes it, or else where),
        empty when all is there."""
        needs = []
        if not self.fields["course"].queryset.exists():  # type: ignore[attr-defined]
            needs.append(("a course", "manage.py import_course --pack arithmetic", "Admin → Courses"))
        if not self.fields["student"].queryset.exists():  # type: ignore[attr-defined]
            needs.append(("a local model", "manage.py bootstrap", "Models (the bundled one, or your own)"))
        return needs

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        student = data.get("student")
        if student is not None and student.backend == LanguageModel.Backend.OPENAI:
            self.add_error("student", "A student must be a local model.")
        if all(name in data for name in self.RUN_FIELDS):
            try:
                RunConfig(**self.run_config())
            except ValueError as exc:
                self.add_error(None, str(exc))
        if data.get("train") and all(name in data for name in self.TRAIN_FIELDS):
            try:
                TrainConfig(base_model="checked-later", **self.train_config())
            except ValueError as exc:
                self.add_error(None, str(exc))
        return data

    def run_config(self) -> dict[str, Any]:
        config = {name: self.cleaned_data[name] for name in self.RUN_FIELDS}
        for name, value in config.items():  # an optional setting left out of the post: its default
            if value is None or value == "":
                config[name] = _run(name)
        return config

    def train_config(self) -> dict[str, Any]:
        if not self.cleaned_data.get("train"):
            return {"disabled": True}
        given = {name: self.cleaned_data[name] for name in self.TRAIN_FIELDS}
        # No steps given: one pass over the round's records (the default), however many there are.
        return {**ROUND_TRAINING, **{k: v for k, v in given.items() if v not in (None, "")}}


class ResumeForm(forms.Form):
    extra_rounds = forms.IntegerField(
        initial=0,
        min_value=0,
        max_value=20,
        required=False,
        help_text="More rounds after the planned ones (they use your ratings).",
    )


class ExplanationEditForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        max_length=8000,
        help_text="Saving an edit approves it. Empty: back to the teacher's text.",
    )

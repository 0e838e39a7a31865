"""Forms of the teaching-run pages (kept apart from the course forms to keep merges simple)."""

from __future__ import annotations

from typing import Any

from django import forms

from training.core.config import TrainConfig
from training.models import LanguageModel
from tutor.core.runs.state import CHOICE_SCORING, PLANS, RunConfig
from tutor.models import Course

LOCAL = LanguageModel.objects.filter(enabled=True).exclude(backend=LanguageModel.Backend.OPENAI)


class TeachingRunForm(forms.Form):
    """Settings of a new run; checked by the same rules the loop and the trainer use."""

    course = forms.ModelChoiceField(queryset=Course.objects.all())
    student = forms.ModelChoiceField(
        queryset=LOCAL, help_text="A local model: its LoRA adapters are trained here."
    )
    teacher = forms.ModelChoiceField(queryset=LanguageModel.objects.filter(enabled=True))
    rounds = forms.IntegerField(initial=2, min_value=1, max_value=20)
    plan = forms.ChoiceField(
        choices=[(p, p) for p in PLANS],
        initial="adaptive",
        help_text="random: the shuffled control arm, same budget.",
    )
    plan_budget = forms.IntegerField(
        initial=16, min_value=0, max_value=10_000, label="Items practised per round"
    )
    explain_budget = forms.IntegerField(
        initial=8, min_value=0, max_value=1_000, label="Explanations per round"
    )
    generate_budget = forms.IntegerField(
        initial=4, min_value=0, max_value=1_000, label="Items to generate from per round"
    )
    generate_k = forms.IntegerField(initial=2, min_value=0, max_value=20, label="New items per source")
    seed = forms.IntegerField(initial=0, min_value=0)
    choice_scoring = forms.ChoiceField(
        choices=[(c, c) for c in CHOICE_SCORING],
        initial=RunConfig().choice_scoring,
        required=False,
        label="Multiple choice answered by",
        help_text="generate: the student writes its answer (graded by letter or option text); likelihood: the "
        "option it finds likeliest.",
    )
    train = forms.BooleanField(initial=True, required=False, label="Fine-tune the student each round")
    max_steps = forms.IntegerField(
        initial=60, min_value=1, max_value=100_000, label="Training steps per round"
    )
    learning_rate = forms.FloatField(initial=2e-3, min_value=1e-7, max_value=1.0)
    lora_r = forms.IntegerField(initial=16, min_value=1, max_value=512, label="LoRA rank")
    batch_size = forms.IntegerField(initial=4, min_value=1, max_value=512)

    RUN_FIELDS = (
        "rounds",
        "plan",
        "plan_budget",
        "explain_budget",
        "generate_budget",
        "generate_k",
        "seed",
        "choice_scoring",
    )
    TRAIN_FIELDS = ("max_steps", "learning_rate", "lora_r", "batch_size")

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
        config["choice_scoring"] = (
            config["choice_scoring"] or RunConfig().choice_scoring
        )  # not posted: the default
        return config

    def train_config(self) -> dict[str, Any]:
        if not self.cleaned_data.get("train"):
            return {"disabled": True}
        return {name: self.cleaned_data[name] for name in self.TRAIN_FIELDS}


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

"""The form that starts an evaluation."""

from __future__ import annotations

from django import forms

from training.models import Adapter, LanguageModel
from tutor.core.runs.evaluation import SPLITS
from tutor.evals.services import MAX_ADAPTERS, MAX_UPLOAD_BYTES, UPLOAD
from tutor.models import Course

SPLIT_CHOICES = [(key, f"{key}: {text}") for key, text in SPLITS.items()] + [
    (UPLOAD, f"{UPLOAD}: the items of a JSONL file (below), a prompt and a gold answer per line")
]


class AdapterChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Adapter) -> str:
        return (
            f"{obj.base_model.name} v{obj.version} (#{obj.pk}, {obj.method}, {obj.created_at:%Y-%m-%d %H:%M})"
        )


class EvaluationForm(forms.Form):
    """Which student and adapters answer which items; the service checks the rest (adapters of
    another base, a course without items in the split, a broken file)."""

    student = forms.ModelChoiceField(
        queryset=LanguageModel.objects.filter(enabled=True),
        help_text="The base model; its own answers are the first column.",
    )
    adapters = AdapterChoices(
        queryset=Adapter.objects.select_related("base_model"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=f"Up to {MAX_ADAPTERS} adapters of that student, each a column beside the base.",
    )
    course = forms.ModelChoiceField(queryset=Course.objects.all(), required=False)
    split = forms.ChoiceField(choices=SPLIT_CHOICES, initial="held-out", widget=forms.RadioSelect)
    items_file = forms.FileField(
        required=False,
        label="Held-out items (JSONL)",
        help_text='With "upload": one JSON object per line, e.g. {"prompt": "What is 7 + 5?", "answer": 12, '
        '"skill": "add"}. Items nobody trained on.',
    )
    max_new_tokens = forms.IntegerField(
        initial=128,
        min_value=1,
        max_value=4096,
        label="Tokens per answer",
        help_text="Greedy answers, at most this long.",
    )

    def clean(self):
        data = super().clean()
        split = data.get("split")
        upload = data.get("items_file")
        if split == UPLOAD:
            if upload is None:
                self.add_error("items_file", "Choose a file to upload, or another split.")
            elif upload.size > MAX_UPLOAD_BYTES:
                self.add_error(
                    "items_file", f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
                )
            else:
                try:
                    data["upload_text"] = upload.read().decode("utf-8")
                except UnicodeDecodeError:
                    self.add_error("items_file", "The file is not UTF-8 text.")
        elif split and not data.get("course"):
            self.add_error("course", "Choose a course (or upload held-out items).")
        return data

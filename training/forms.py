from __future__ import annotations

from typing import Any

from django import forms

from training.core.config import MAX_STEPS, TrainConfig
from training.core.fields import setting_default, setting_help
from training.models import Adapter, LanguageModel, TrainingDataset


def _default(name: str) -> Any:
    return setting_default(TrainConfig, name)


def _help(name: str) -> str:
    text = setting_help(TrainConfig, name)
    return text[0].upper() + text[1:] + "."


def read_text_upload(upload, *, max_mb: int) -> str:
    """An uploaded file as UTF-8 text, or a form error saying why not."""
    if upload.size > max_mb * 1024 * 1024:
        raise forms.ValidationError(f"The file is larger than {max_mb} MB.")
    try:
        return upload.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise forms.ValidationError(f"The file is not UTF-8 text (byte {exc.start}).") from exc


class DatasetUploadForm(forms.Form):
    name = forms.CharField(max_length=200)
    method = forms.ChoiceField(choices=TrainingDataset.Method.choices, initial="sft")
    file = forms.FileField(
        help_text="JSONL: one record per line, in the chat format of TRL / OpenAI fine-tuning."
    )

    def clean_file(self) -> str:
        return read_text_upload(self.cleaned_data["file"], max_mb=50)


class FineTuneForm(forms.Form):
    base_model = forms.ModelChoiceField(
        queryset=LanguageModel.objects.filter(enabled=True).exclude(backend="openai"),
        label="Model to fine-tune",
    )
    dataset = forms.ModelChoiceField(queryset=TrainingDataset.objects.all())
    parent_adapter = forms.ModelChoiceField(
        queryset=Adapter.objects.all(),
        required=False,
        help_text="Continue from this adapter (same base model).",
    )
    learning_rate = forms.FloatField(
        initial=_default("learning_rate"), min_value=1e-7, max_value=1.0, help_text=_help("learning_rate")
    )
    num_epochs = forms.FloatField(
        initial=_default("num_epochs"), min_value=0.01, max_value=100, help_text=_help("num_epochs")
    )
    max_steps = forms.IntegerField(
        initial=_default("max_steps"), min_value=-1, max_value=MAX_STEPS, help_text=_help("max_steps")
    )
    batch_size = forms.IntegerField(
        initial=_default("batch_size"), min_value=1, max_value=512, help_text=_help("batch_size")
    )
    lora_r = forms.IntegerField(
        initial=_default("lora_r"), min_value=1, max_value=512, label="LoRA rank", help_text=_help("lora_r")
    )

    WHAT_FIELDS = ("base_model", "dataset", "parent_adapter")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Preselect what there is to choose: the default student (or the only model), the only dataset.
        models = self.fields["base_model"].queryset
        if not self.initial.get("base_model"):
            chosen = models.filter(is_default_student=True).first() or (
                models.first() if models.count() == 1 else None
            )
            if chosen is not None:
                self.initial["base_model"] = chosen.pk
        datasets = self.fields["dataset"].queryset
        if not self.initial.get("dataset") and datasets.count() == 1:
            self.initial["dataset"] = datasets.get().pk

    @property
    def chosen_dataset(self) -> TrainingDataset | None:
        """The dataset the form shows as chosen, if it is one (a posted value may be anything)."""
        value = str(self["dataset"].value() or "")
        return self.fields["dataset"].queryset.filter(pk=int(value)).first() if value.isdigit() else None

    def clean(self):
        data = super().clean()
        adapter, model = data.get("parent_adapter"), data.get("base_model")
        if adapter and model and adapter.base_model_id != model.pk:
            self.add_error("parent_adapter", f"{adapter} was trained on {adapter.base_model}, not {model}.")
        return data

from __future__ import annotations

from django import forms

from training.models import Adapter, LanguageModel, TrainingDataset


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
    learning_rate = forms.FloatField(initial=2e-4, min_value=1e-7, max_value=1.0)
    num_epochs = forms.FloatField(initial=1.0, min_value=0.01, max_value=100)
    max_steps = forms.IntegerField(initial=-1, min_value=-1, help_text="-1: use the epochs.")
    batch_size = forms.IntegerField(initial=4, min_value=1, max_value=512)
    lora_r = forms.IntegerField(initial=16, min_value=1, max_value=512, label="LoRA rank")

    def clean(self):
        data = super().clean()
        adapter, model = data.get("parent_adapter"), data.get("base_model")
        if adapter and model and adapter.base_model_id != model.pk:
            self.add_error("parent_adapter", f"{adapter} was trained on {adapter.base_model}, not {model}.")
        return data

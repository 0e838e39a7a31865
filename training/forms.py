from __future__ import annotations

from typing import Any

from django import forms

from training.core.config import LR_SCHEDULERS, PRECISIONS, PRESET_LABELS, PRESETS, SettingError, TrainConfig
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


def _number(name: str, field: type[forms.Field] = forms.FloatField, **kwargs: Any) -> forms.Field:
    """A setting's field: its default shown, its help beside it; blank means the default (or the
    preset's value). Its limits are TrainConfig's own, checked in ``FineTuneForm.clean``."""
    return field(initial=_default(name), required=False, help_text=_help(name), **kwargs)


def precision_field() -> forms.ChoiceField:
    """``TrainConfig.precision`` as a choice, its default shown, its help beside it (the fine-tune form
    and the teaching-run form)."""
    return forms.ChoiceField(
        choices=[(p, p) for p in PRECISIONS],
        initial=_default("precision"),
        required=False,
        label="Precision",
        help_text=_help("precision"),
    )


def _modules(value: tuple[str, ...] | None) -> str:
    return ", ".join(value or ())


class FineTuneForm(forms.Form):
    """A LoRA job's settings. Every value is checked by ``TrainConfig`` itself, and a bad one is shown
    next to its field; the presets are ``training.core.config.PRESETS``."""

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
    preset = forms.ChoiceField(
        choices=[("", "defaults"), *PRESET_LABELS.items()],
        required=False,
        label="Start from",
        help_text="Choosing a preset fills in its settings. Without JavaScript they are filled in when "
        "you start: every setting still showing the value the page showed takes the preset's, a setting "
        "you changed keeps yours, and a blank one takes the preset's (or the default).",
    )
    learning_rate = _number("learning_rate")
    lr_scheduler = forms.ChoiceField(
        choices=[(s, s) for s in LR_SCHEDULERS],
        initial=_default("lr_scheduler"),
        required=False,
        label="Learning-rate schedule",
        help_text=_help("lr_scheduler"),
    )
    precision = precision_field()
    warmup_ratio = _number("warmup_ratio", label="Warm-up share")
    num_epochs = _number("num_epochs", label="Epochs")
    max_steps = _number("max_steps", forms.IntegerField)
    batch_size = _number("batch_size", forms.IntegerField)
    grad_accum = _number("grad_accum", forms.IntegerField, label="Gradient accumulation")
    max_seq_length = _number("max_seq_length", forms.IntegerField, label="Max length (tokens)")
    eval_fraction = _number("eval_fraction", label="Eval share")
    checkpoint_every = _number("checkpoint_every", forms.IntegerField)
    seed = _number("seed", forms.IntegerField)
    lora_r = _number("lora_r", forms.IntegerField, label="LoRA rank")
    lora_alpha = _number("lora_alpha", forms.IntegerField, label="LoRA alpha")
    lora_dropout = _number("lora_dropout", label="LoRA dropout")
    lora_layers = _number("lora_layers", forms.IntegerField, label="LoRA layers")
    target_modules = forms.CharField(
        initial=_modules(_default("target_modules")),
        required=False,
        label="LoRA targets",
        help_text=_help("target_modules") + " Names separated by commas, e.g. q_proj, v_proj.",
    )
    dpo_beta = _number("dpo_beta", label="DPO/KTO beta")

    WHAT_FIELDS = ("base_model", "dataset", "parent_adapter")
    SCHEDULE_FIELDS = (
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "num_epochs",
        "max_steps",
        "batch_size",
        "grad_accum",
        "max_seq_length",
        "eval_fraction",
        "checkpoint_every",
        "seed",
        "precision",
    )
    LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_layers", "target_modules", "dpo_beta")
    SETTING_FIELDS = SCHEDULE_FIELDS + LORA_FIELDS

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
        # A preset asked for in the address (?preset=quick-cpu) is drawn filled in.
        preset = self.initial.get("preset")
        if preset in PRESETS:
            for name, value in self.preset_values(preset).items():
                self.initial[name] = _modules(value) if name == "target_modules" else value

    @property
    def shown_preset(self) -> str:
        """The preset whose values the settings showed when the page was drawn: the hidden input
        ``shown_preset`` (the page's script keeps it up to date). Not a form field: anything that is no
        preset reads as the defaults, since a hidden field's error would have nowhere to show."""
        value = self.data.get("shown_preset") if self.is_bound else self.initial.get("preset")
        return value if value in PRESETS else ""

    @classmethod
    def preset_values(cls, preset: str) -> dict[str, Any]:
        """Every setting of the form as ``preset`` (or, for "", the defaults) sets it."""
        chosen = PRESETS.get(preset, {})
        return {name: chosen.get(name, _default(name)) for name in cls.SETTING_FIELDS}

    @classmethod
    def presets_for_script(cls) -> dict[str, dict[str, Any]]:
        """The values the page's script fills in, as the inputs show them."""
        return {
            key: {k: _modules(v) if k == "target_modules" else v for k, v in cls.preset_values(key).items()}
            for key in ("", *PRESETS)
        }

    @property
    def chosen_dataset(self) -> TrainingDataset | None:
        """The dataset the form shows as chosen, if it is one (a posted value may be anything)."""
        value = str(self["dataset"].value() or "")
        return self.fields["dataset"].queryset.filter(pk=int(value)).first() if value.isdigit() else None

    def clean_target_modules(self) -> tuple[str, ...] | None:
        names = tuple(n.strip() for n in self.cleaned_data["target_modules"].split(",") if n.strip())
        return names or None

    def clean(self):
        data = super().clean()
        adapter, model = data.get("parent_adapter"), data.get("base_model")
        if adapter and model and adapter.base_model_id != model.pk:
            self.add_error("parent_adapter", f"{adapter} was trained on {adapter.base_model}, not {model}.")
        shown = self.preset_values(self.shown_preset)
        chosen = self.preset_values(data.get("preset") or "")
        for name in self.SETTING_FIELDS:
            if name in self.errors:
                continue
            value = data.get(name)
            if value is None or value == "" or value == shown[name]:  # left as drawn: the preset decides
                data[name] = chosen[name]
        if not any(name in self.errors for name in self.SETTING_FIELDS):
            self._check_settings(data)
        return data

    def _check_settings(self, data: dict[str, Any]) -> None:
        """TrainConfig's own checks; a bad value is an error on its field."""
        dataset = data.get("dataset")
        try:
            TrainConfig(
                base_model="checked-when-the-job-is-created",
                method=dataset.method if dataset else "sft",
                **self.settings(data),
            )
        except SettingError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, f"{exc}.")
        except (TypeError, ValueError) as exc:
            self.add_error(None, str(exc))

    def settings(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The TrainConfig settings of a valid form (keyword arguments of ``training_job_create``)."""
        data = self.cleaned_data if data is None else data
        return {name: data[name] for name in self.SETTING_FIELDS}

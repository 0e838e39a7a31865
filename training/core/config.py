"""The training configuration: one frozen, validated dataclass, saved with every checkpoint and adapter.

Rules that matter:
- a config is checked when it is made, so a bad value fails at job creation with a message that names
  the field, never minutes later inside the trainer;
- it round-trips through JSON (``to_dict`` / ``from_dict``), the form stored on the job and written
  next to each checkpoint as ``teachloop_train_config.json``;
- ``from_dict`` ignores nothing silently: an unknown key is an error (a typo would otherwise train
  with the default).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from training.core.fields import setting

CONFIG_FILENAME = "teachloop_train_config.json"

METHODS = ("sft", "dpo", "kto")
LR_SCHEDULERS = ("linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")

# Experiment trackers TRL may report to, and the packages each needs (any one of them will do). They are
# not dependencies of TeachLoop: a job that asks for a missing one fails before loading the model.
REPORTERS: dict[str, tuple[str, ...]] = {
    "none": (),
    "tensorboard": ("tensorboard", "tensorboardX"),
    "mlflow": ("mlflow",),
    "wandb": ("wandb",),
}
# Where a job's tracking goes, not how it trains: resuming a checkpoint ignores a change in these.
TRACKING_FIELDS = ("report_to", "run_name")
TENSORBOARD_DIRNAME = "tensorboard"  # under the output folder of train()

# Starting points for the fine-tune form (and anyone else): the settings each changes from the
# defaults. Both keep peft's LoRA targets for the architecture (every projection where known).
PRESETS: dict[str, dict[str, Any]] = {
    # A few minutes on two CPU cores with a small model: short records, few steps, a lower rank.
    "quick-cpu": {
        "lora_r": 8,
        "lora_alpha": 16,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.05,
        "num_epochs": 1.0,
        "max_steps": 60,
        "batch_size": 4,
        "grad_accum": 1,
        "max_seq_length": 512,
        "eval_fraction": 0.0,
        "checkpoint_every": 20,
    },
    # Full passes on a GPU: a larger rank and effective batch of 32, longer records, a cosine
    # schedule and a held-out share to watch the eval loss.
    "quality-gpu": {
        "lora_r": 32,
        "lora_alpha": 64,
        "lora_dropout": 0.05,
        "learning_rate": 2e-4,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.03,
        "num_epochs": 3.0,
        "max_steps": -1,
        "batch_size": 16,
        "grad_accum": 2,
        "max_seq_length": 2048,
        "eval_fraction": 0.05,
        "checkpoint_every": 100,
    },
}
PRESET_LABELS = {"quick-cpu": "quick, CPU", "quality-gpu": "quality, GPU"}


class SettingError(ValueError):
    """A setting with a bad value; ``field`` names it (forms show the message next to that field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field


# Every attention and MLP projection: LoRA on all linear layers trains noticeably better than on
# q/v alone (QLoRA paper, §4) for little extra memory at r=16.
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "llama": ALL_PROJECTIONS,
    "mistral": ALL_PROJECTIONS,
    "qwen2": ALL_PROJECTIONS,
    "qwen3": ALL_PROJECTIONS,
}


@dataclass(frozen=True)
class TrainConfig:
    """How to fine-tune ``base_model`` with LoRA; every field is validated in ``__post_init__`` and
    carries its help (:func:`~training.core.fields.setting_help`), which CLIs and forms show."""

    base_model: str = setting(help="the model to fine-tune: a folder or a Hugging Face id")
    method: str = setting(
        "sft",
        help="sft: supervised fine-tuning on chat records; dpo or kto: preference "
        "training on pairs or thumbs",
    )
    parent_adapter: str | None = setting(
        None,
        help="an adapter folder to continue training (its LoRA shape "
        "is kept; the lora_* settings are ignored then)",
    )
    chat_template: str | None = setting(
        None, help="a Jinja chat template that overrides (or supplies) the tokenizer's"
    )
    lora_r: int = setting(16, help="LoRA rank: the size of the low-rank update")
    lora_alpha: int = setting(32, help="LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = setting(
        0.0, help="dropout on the LoRA inputs (0, peft's default; set it for long runs on little data)"
    )
    target_modules: tuple[str, ...] | None = setting(
        None, help="the modules LoRA adapts (empty: every attention and MLP projection, else peft's default)"
    )
    lora_layers: int = setting(
        0,
        help="adapt only the model's last N transformer layers (0: every layer); the backward pass stops "
        "at the lowest adapted layer, so fewer layers train faster",
    )
    precision: str = setting(
        "auto",
        help="auto: bfloat16 on a GPU that has it, float32 on a CPU; bf16: bfloat16 also on a CPU with "
        "AVX512-BF16 or AMX (faster, but it taught less in our benchmark), or fail; fp32: always float32",
    )
    learning_rate: float = setting(2e-4, help="peak learning rate")
    lr_scheduler: str = setting("linear", help="learning-rate schedule after warm-up: linear or cosine")
    warmup_ratio: float = setting(
        0.03, help="share of the steps spent warming the learning rate up, in [0, 1)"
    )
    num_epochs: float = setting(1.0, help="passes over the data (max_steps wins unless it is -1)")
    max_steps: int = setting(-1, help="optimizer steps to train (-1: use num_epochs)")
    batch_size: int = setting(4, help="records per step on each device (at least 2 for kto)")
    grad_accum: int = setting(1, help="steps whose gradients are summed before each optimizer step")
    max_seq_length: int = setting(1024, help="tokens per record; longer records are cut")
    seed: int = setting(42, help="random seed of the data order and LoRA initialisation")
    eval_fraction: float = setting(
        0.0, help="share of the records held out to report an eval loss, in [0, 1)"
    )
    checkpoint_every: int = setting(50, help="optimizer steps between resumable checkpoints")
    dpo_beta: float = setting(0.1, help="dpo and kto: how far the model may move from the reference")
    report_to: str = setting(
        "none", help="the experiment tracker TRL reports to: none, tensorboard, mlflow or wandb"
    )
    run_name: str | None = setting(
        None, help="the run's name in mlflow or wandb (None: the tracker names it)"
    )

    def __post_init__(self) -> None:
        # Normalise JSON-ish inputs first (lists, Paths) so the frozen instance is hashable and equal
        # to its own round trip.
        if isinstance(self.parent_adapter, Path):
            object.__setattr__(self, "parent_adapter", str(self.parent_adapter))
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.parent_adapter == "":
            object.__setattr__(self, "parent_adapter", None)
        if self.chat_template == "":
            object.__setattr__(self, "chat_template", None)
        if self.run_name == "":
            object.__setattr__(self, "run_name", None)
        self._validate()

    def _validate(self) -> None:
        _require(
            isinstance(self.base_model, str) and self.base_model.strip() != "",
            "base_model",
            "must be a model folder or hub id",
        )
        _require(
            self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}, not {self.method!r}"
        )
        _require(
            self.parent_adapter is None or isinstance(self.parent_adapter, str),
            "parent_adapter",
            "must be a folder path or None",
        )
        _require(
            self.chat_template is None or isinstance(self.chat_template, str),
            "chat_template",
            "must be a Jinja template string or None",
        )
        _int(self, "lora_r", minimum=1, maximum=MAX_LORA_RANK)
        _int(self, "lora_alpha", minimum=1)
        _int(self, "lora_layers", minimum=0)
        _number(self, "lora_dropout", minimum=0.0, below=1.0)
        if self.target_modules is not None:
            _require(
                isinstance(self.target_modules, tuple)
                and len(self.target_modules) > 0
                and all(isinstance(m, str) and m for m in self.target_modules),
                "target_modules",
                "must be a non-empty list of module names, or None for the default",
            )
        _require(
            self.precision in PRECISIONS,
            "precision",
            f"must be one of {', '.join(PRECISIONS)}, not {self.precision!r}",
        )
        _number(self, "learning_rate", above=0.0)
        _require(
            self.lr_scheduler in LR_SCHEDULERS,
            "lr_scheduler",
            f"must be one of {', '.join(LR_SCHEDULERS)}, not {self.lr_scheduler!r}",
        )
        # transformers 5 reads warmup_steps < 1 as a ratio and >= 1 as a count, so 1.0 would mean one step.
        _number(self, "warmup_ratio", minimum=0.0, below=1.0)
        _number(self, "num_epochs", above=0.0)
        _int(self, "max_steps", minimum=-1, maximum=MAX_STEPS)
        _require(self.max_steps != 0, "max_steps", "must be positive, or -1 to train for num_epochs")
        _int(self, "batch_size", minimum=1)
        # KTO estimates its KL term from the other completions in the same batch.
        _require(self.method != "kto" or self.batch_size >= 2, "batch_size", "must be at least 2 for kto")
        _int(self, "grad_accum", minimum=1)
        _int(self, "max_seq_length", minimum=16)
        _int(self, "seed", minimum=0, maximum=MAX_SEED)
        _number(self, "eval_fraction", minimum=0.0, below=1.0)
        _int(self, "checkpoint_every", minimum=1)
        _number(self, "dpo_beta", above=0.0)
        _require(
            self.report_to in REPORTERS,
            "report_to",
            f"must be one of {', '.join(REPORTERS)}, not {self.report_to!r}",
        )
        _require(
            self.run_name is None or (isinstance(self.run_name, str) and self.run_name.strip() != ""),
            "run_name",
            "must be a non-empty name or None",
        )

    # --- JSON ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists)."""
        data = asdict(self)
        if data["target_modules"] is not None:
            data["target_modules"] = list(data["target_modules"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from ``to_dict`` output; unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)

    def save(self, folder: Path) -> Path:
        """Write ``teachloop_train_config.json`` into ``folder``."""
        path = Path(folder) / CONFIG_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> TrainConfig:
        return cls.from_dict(json.loads((Path(folder) / CONFIG_FILENAME).read_text()))

    def differences(self, other: TrainConfig) -> list[str]:
        """Names of the fields whose values differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [name for name in mine if mine[name] != theirs[name]]

    def training_differences(self, other: TrainConfig) -> list[str]:
        """Like ``differences``, without the fields that only say where tracking goes."""
        return [name for name in self.differences(other) if name not in TRACKING_FIELDS]


def missing_reporter_package(report_to: str) -> str | None:
    """The package to install for ``report_to``, or None when one of its packages is importable."""
    import importlib.util

    packages = REPORTERS.get(report_to, ())
    if not packages or any(importlib.util.find_spec(name) is not None for name in packages):
        return None
    return packages[0]


def default_target_modules(model_type: str) -> list[str] | None:
    """All projections for the architectures we know; None lets peft pick its own default."""
    modules = DEFAULT_TARGET_MODULES.get(model_type)
    return list(modules) if modules else None


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise SettingError(field_name, message)


MAX_SEED = 2**32 - 1  # numpy's and the trainer's seeds; torch refuses larger ones
MAX_STEPS = 10_000_000
MAX_LORA_RANK = 1024  # above any model's useful rank; peft would allocate (and a worker run out of memory)


def _int(config: TrainConfig, name: str, *, minimum: int, maximum: int | None = None) -> None:
    value = getattr(config, name)
    # bool is an int subclass; True as a batch size is a bug, not a 1.
    _require(
        isinstance(value, int) and not isinstance(value, bool), name, f"must be a whole number, not {value!r}"
    )
    _require(value >= minimum, name, f"must be at least {minimum}, not {value}")
    _require(maximum is None or value <= maximum, name, f"must be at most {maximum}, not {value}")


def _number(
    config: TrainConfig,
    name: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> None:
    value = getattr(config, name)
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        name,
        f"must be a finite number, not {value!r}",
    )
    if minimum is not None:
        _require(value >= minimum, name, f"must be at least {minimum}, not {value}")
    if above is not None:
        _require(value > above, name, f"must be greater than {above}, not {value}")
    if below is not None:
        _require(value < below, name, f"must be less than {below}, not {value}")

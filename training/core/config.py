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

CONFIG_FILENAME = "teachloop_train_config.json"

METHODS = ("sft", "dpo", "kto")
LR_SCHEDULERS = ("linear", "cosine")

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
    """How to fine-tune ``base_model`` with LoRA; every field is validated in ``__post_init__``.

    ``parent_adapter`` continues training an existing adapter: its own LoRA shape (rank, alpha,
    target modules) is kept, so the ``lora_*`` and ``target_modules`` fields are ignored then.
    ``max_steps`` wins over ``num_epochs`` unless it is -1.
    """

    base_model: str
    method: str = "sft"
    parent_adapter: str | None = None
    chat_template: str | None = None  # Jinja; overrides (or supplies) the tokenizer's template
    lora_r: int = 16
    lora_alpha: int = 32
    # 0 as in peft's own default: on a CPU, dropout masks were ~20% of a SmolLM2-135M step and ~0.4 GB of
    # activations (docs/benchmarks/train_throughput.md); set it for long runs on little data.
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: per-architecture default, then peft's own
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.03
    num_epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_length: int = 1024
    seed: int = 42
    eval_fraction: float = 0.0
    checkpoint_every: int = 50
    dpo_beta: float = 0.1

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
        _int(self, "lora_r", minimum=1)
        _int(self, "lora_alpha", minimum=1)
        _number(self, "lora_dropout", minimum=0.0, below=1.0)
        if self.target_modules is not None:
            _require(
                isinstance(self.target_modules, tuple)
                and len(self.target_modules) > 0
                and all(isinstance(m, str) and m for m in self.target_modules),
                "target_modules",
                "must be a non-empty list of module names, or None for the default",
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
        _int(self, "max_steps", minimum=-1)
        _require(self.max_steps != 0, "max_steps", "must be positive, or -1 to train for num_epochs")
        _int(self, "batch_size", minimum=1)
        # KTO estimates its KL term from the other completions in the same batch.
        _require(self.method != "kto" or self.batch_size >= 2, "batch_size", "must be at least 2 for kto")
        _int(self, "grad_accum", minimum=1)
        _int(self, "max_seq_length", minimum=16)
        _int(self, "seed", minimum=0)
        _number(self, "eval_fraction", minimum=0.0, below=1.0)
        _int(self, "checkpoint_every", minimum=1)
        _number(self, "dpo_beta", above=0.0)

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


def default_target_modules(model_type: str) -> list[str] | None:
    """All projections for the architectures we know; None lets peft pick its own default."""
    modules = DEFAULT_TARGET_MODULES.get(model_type)
    return list(modules) if modules else None


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{field_name} {message}")


def _int(config: TrainConfig, name: str, *, minimum: int) -> None:
    value = getattr(config, name)
    # bool is an int subclass; True as a batch size is a bug, not a 1.
    _require(
        isinstance(value, int) and not isinstance(value, bool), name, f"must be a whole number, not {value!r}"
    )
    _require(value >= minimum, name, f"must be at least {minimum}, not {value}")


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

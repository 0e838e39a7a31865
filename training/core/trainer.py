"""The training engine: one ``train()`` that fine-tunes a LoRA adapter with TRL, read top to bottom.

Rules that matter:
- expected ends come back as a ``TrainResult`` (succeeded / cancelled / failed with a reason a person
  can act on): bad data, a parent adapter that does not fit the base, a loss that became NaN, running
  out of memory. Anything else is a bug and propagates;
- progress goes to an injected ``progress(ProgressEvent)`` after every optimizer step, and
  ``should_stop()`` is polled after every step: a cancel keeps a checkpoint and writes the adapter
  of the current state;
- ``output_dir/checkpoints/checkpoint-N`` are the Trainer's own (optimizer, scheduler, RNG state);
  ``resume=True`` continues from the newest one, with the same data order;
- ``output_dir/adapter`` is a plain PEFT folder (adapter, tokenizer with its chat template, our
  config, metrics, model card) that loads with ``PeftModel.from_pretrained`` alone.

How each method trains (TRL 1.16):
- sft: each conversation becomes a conversational prompt/completion pair (prompt = all messages but
  the last, completion = the final assistant message) and TRL's ``completion_only_loss`` puts labels
  on the completion tokens only (the answer and its end-of-turn token). TRL's
  ``assistant_only_loss`` would also train earlier assistant turns, but it needs ``{% generation %}``
  markers that few chat templates carry; TRL swaps in a marked template only for the ~30 templates it
  knows by exact text, not ChatML or SmolLM2's, and raises otherwise.
  Batches are padding-free: examples are concatenated into one row with restarting ``position_ids``,
  which transformers 5 turns into a block-diagonal mask for sdpa/eager attention, so it is exact
  without flash-attention (test_it_trains_padding_free_with_the_same_loss_as_padding; speed and
  memory in docs/decisions.md). On a CPU the tokens a batch's examples begin with in common (a chat
  template's system prompt) are in the row once and every example attends to them
  (``cpu_paths.SharedPrefixCollator``; same loss and gradients); ``tokens`` and tokens/s still count
  every example's own tokens.
- dpo, kto: TRL's trainers; the reference is the base with the adapter switched off (continuing a
  parent adapter, a frozen copy of it), so no second model is loaded. Both pad: DPOTrainer turns
  ``padding_free`` off in 1.16 and KTOTrainer has none. Plain-string records become one user and one
  assistant message when the tokenizer has a chat template, so preference training sees prompts
  formatted the way inference formats them.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from datasets import Dataset
from jinja2.exceptions import TemplateError
from peft import LoraConfig, PeftModel
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback, set_seed
from transformers.integrations import TensorBoardCallback
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

from training.core.config import (
    CONFIG_FILENAME,
    TENSORBOARD_DIRNAME,
    TrainConfig,
    default_target_modules,
    missing_reporter_package,
)
from training.core.cpu_paths import (
    SharedPrefixCollator,
    attend_within_each_sequence,
    dense_lm_head_on_labelled_positions,
    shared_prefix_tokens_saved,
)
from training.core.datasets import DatasetError, split_for_training, validate_records
from training.core.errors import first_line, size_mismatch_summary
from training.core.merge import same_model

logger = logging.getLogger(__name__)

STATE_FILENAME = "teachloop_state.json"  # beside each checkpoint: what the Trainer does not keep


@dataclass(frozen=True)
class ProgressEvent:
    """One optimizer step (or an evaluation at that step, then ``eval_loss`` is set)."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    grad_norm: float | None
    tokens_per_s: float  # real tokens (no padding) of this step's batches per second
    eta_s: float
    epoch: float
    eval_loss: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """How a run ended. ``adapter_dir`` is set when succeeded or cancelled after some training."""

    status: str  # "succeeded" | "cancelled" | "failed"
    reason: str
    adapter_dir: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    last_checkpoint: Path | None = None


class AdapterMismatch(Exception):
    """The adapter (a parent adapter, or the LoRA target modules) does not fit the base model."""


def _frees_memory(function: Callable[..., TrainResult]) -> Callable[..., TrainResult]:
    """A worker trains job after job in one process: drop the model and trainer cycles, and the GPU cache."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> TrainResult:
        try:
            return function(*args, **kwargs)
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    return wrapper


@_frees_memory
def train(
    config: TrainConfig,
    records: list[dict[str, Any]],
    output_dir: Path,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
) -> TrainResult:
    """Fine-tune a LoRA adapter on ``records`` into ``output_dir/adapter``; see the module docstring."""
    started = time.monotonic()
    output_dir = Path(output_dir)
    checkpoints = output_dir / "checkpoints"
    datasets.disable_progress_bars()  # a worker's log is no place for map() progress bars

    # 1. Data: every bad record is named before any model is loaded; so is a tracker that is not installed.
    missing = missing_reporter_package(config.report_to)
    if missing:
        return _failed(
            f"report_to={config.report_to} needs the {missing} package, which is not installed: "
            f"pip install {missing} (or set TEACHLOOP_REPORT_TO=none)",
            checkpoints,
        )
    try:
        validate_records(records, config.method)
    except DatasetError as exc:
        return _failed(f"invalid dataset: {exc}", checkpoints)
    train_records, eval_records = _split(records, config)

    # 2. Where to start: the newest checkpoint, made with this very configuration.
    if not resume:
        # Starting over: an old checkpoint-9 must not outrank a new checkpoint-3 later.
        shutil.rmtree(checkpoints, ignore_errors=True)
    resume_from = _latest_checkpoint(checkpoints) if resume else None
    if resume_from is not None:
        changed = _config_changes(config, resume_from)
        if changed:
            return _failed(
                f"the checkpoints in {checkpoints} were made with different settings "
                f"({', '.join(changed)}); start over without resuming",
                checkpoints,
            )
    if should_stop is not None and should_stop():
        return TrainResult("cancelled", "cancelled before training started", None, {}, resume_from)
    if resume_from is not None:
        logger.info("resuming from %s", resume_from)

    # 3. Model, tokenizer and LoRA. Where the hardware computes in bf16 (TrainConfig.precision), the frozen
    # base is loaded in bf16 too, on a GPU and a CPU alike: half the memory, no casts per step; peft keeps
    # the LoRA weights in fp32 and the Trainer's bf16 autocasts around them.
    cuda = torch.cuda.is_available()
    bf16 = computes_in_bf16(config.precision, cuda=cuda)
    if config.precision == "bf16" and not bf16:
        where = "this GPU" if cuda else "this CPU (no AVX512-BF16 or AMX)"
        return _failed(f"precision bf16: {where} has no bfloat16 arithmetic; use auto or fp32", checkpoints)
    set_seed(config.seed)
    try:
        tokenizer = _load_tokenizer(config)
        if not tokenizer.chat_template and _has_conversations(records, config.method):
            return _failed(
                f"{config.base_model} has no chat template; set chat_template to train on conversations",
                checkpoints,
            )
        model = _load_model(config, torch.bfloat16 if bf16 else torch.float32)
        per_sequence = not cuda and attend_within_each_sequence(model)
        model, peft_config, note = _attach_lora(model, config)
    except AdapterMismatch as exc:
        return _failed(str(exc), checkpoints)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        return _failed(f"out of memory while loading {config.base_model}: {first_line(exc)}", checkpoints)

    # 4. The TRL trainer for the method, reporting through our callback.
    watcher = _ProgressCallback(config, progress, should_stop, tokens_before=_tokens_seen(resume_from))
    chat = bool(tokenizer.chat_template)
    train_dataset = _to_trl_records(train_records, config.method, chat)
    eval_dataset = _to_trl_records(eval_records, config.method, chat) if eval_records else None
    try:
        trainer = _build_trainer(
            config,
            model,
            tokenizer,
            peft_config,
            train_dataset,
            eval_dataset,
            checkpoints,
            watcher,
            cuda=cuda,
            bf16=bf16,
            share_prefixes=per_sequence,
        )
    except TemplateError as exc:  # e.g. a template that refuses a system message
        return _failed(f"the chat template could not format a record: {exc}", checkpoints)
    if len(trainer.train_dataset) == 0:
        return _failed(
            f"no record fits in max_seq_length={config.max_seq_length} tokens with room for an answer",
            checkpoints,
        )

    # 5. Train. Out of memory is an expected end: say where, and what to turn down.
    try:
        with dense_lm_head_on_labelled_positions():  # CPU only; other devices keep TRL's kernels
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        return _failed(
            f"ran out of {'GPU' if cuda else 'CPU'} memory at step {watcher.step + 1}: "
            f"{first_line(exc)}; lower batch_size ({config.batch_size}) or max_seq_length "
            f"({config.max_seq_length}), and raise grad_accum to keep the effective batch",
            checkpoints,
        )

    # 6. The outcome: a NaN/inf loss fails without an adapter; a cancel or success writes one.
    metrics = watcher.metrics(trainer.state, started, len(train_records), len(eval_records))
    if watcher.failure:
        return _failed(watcher.failure, checkpoints, metrics)
    status = "cancelled" if watcher.cancelled else "succeeded"
    metrics["status"] = status
    adapter_dir = _save_adapter(trainer, tokenizer, config, metrics, output_dir / "adapter")
    step, total = trainer.state.global_step, trainer.state.max_steps
    reason = f"cancelled at step {step} of {total}" if watcher.cancelled else f"trained {step} steps"
    reason = f"{reason}; {note}" if note else reason
    return TrainResult(status, reason, adapter_dir, metrics, _latest_checkpoint(checkpoints))


# --- data -----------------------------------------------------------------------------------


def _split(records: list[dict[str, Any]], config: TrainConfig) -> tuple[list[dict], list[dict]]:
    return split_for_training(records, eval_fraction=config.eval_fraction, seed=config.seed)


def _has_conversations(records: list[dict[str, Any]], method: str) -> bool:
    return method == "sft" or any(isinstance(record["prompt"], list) for record in records)


def _to_trl_records(records: list[dict[str, Any]], method: str, chat: bool):
    """Our validated records in the TRL dataset format the method's trainer takes."""

    def messages(value):
        if isinstance(value, str):
            return value
        # Only role and content: TRL would hand any other key on to the chat template.
        return [{"role": m["role"], "content": m["content"]} for m in value]

    def as_chat(prompt, answer):
        # Plain strings are one user turn and one assistant turn, formatted as inference will format them.
        if chat and isinstance(prompt, str):
            return [{"role": "user", "content": prompt}], [{"role": "assistant", "content": answer}]
        return messages(prompt), messages(answer)

    rows = []
    for record in records:
        if method == "sft":
            conversation = messages(record["messages"])
            rows.append({"prompt": conversation[:-1], "completion": conversation[-1:]})
        elif method == "dpo":
            prompt, chosen = as_chat(record["prompt"], record["chosen"])
            rejected = as_chat(record["prompt"], record["rejected"])[1]
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        else:
            prompt, completion = as_chat(record["prompt"], record["completion"])
            rows.append({"prompt": prompt, "completion": completion, "label": record["label"]})
    return Dataset.from_list(rows)


# --- model ----------------------------------------------------------------------------------


def _load_tokenizer(config: TrainConfig):
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    if config.chat_template:
        tokenizer.chat_template = config.chat_template
    return tokenizer


def _load_model(config: TrainConfig, dtype):
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=dtype)
    # No KV cache in training. It matters for padding-free batches: with a cache, transformers skips deriving
    # the block-diagonal mask from position_ids and sequences attend across their boundaries (TRL's
    # compute_loss passes use_cache=False too; this covers every other forward).
    model.config.use_cache = False
    return model


def _attach_lora(model, config: TrainConfig):
    """(model, LoraConfig for TRL to apply or None, note). A parent adapter is loaded trainable."""
    if config.parent_adapter:
        folder = Path(config.parent_adapter)
        adapter_config = folder / "adapter_config.json"
        if not adapter_config.is_file():
            raise AdapterMismatch(f"parent adapter {folder} is missing (no adapter_config.json)")
        trained_on = json.loads(adapter_config.read_text()).get("base_model_name_or_path") or "?"
        try:
            model = PeftModel.from_pretrained(model, str(folder), is_trainable=True)
        except (RuntimeError, ValueError) as exc:
            if not isinstance(exc, ValueError) and "size mismatch" not in str(exc):
                raise
            raise AdapterMismatch(
                f"parent adapter {folder} (trained on {trained_on}) does not fit "
                f"{config.base_model}: {size_mismatch_summary(exc)}"
            ) from exc
        # Paths move (a model cache on another disk), so a different name alone is only a note;
        # a different shape already failed above.
        note = (
            None
            if same_model(trained_on, config.base_model)
            else f"note: parent adapter was trained on {trained_on}, continued on {config.base_model}"
        )
        return model, None, note

    model_type = model.config.model_type
    targets = list(config.target_modules) if config.target_modules else default_target_modules(model_type)
    if targets is None and model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        raise AdapterMismatch(f"no default LoRA target modules for {model_type!r} models; set target_modules")
    if targets:
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in targets if t not in present]
        if missing:
            raise AdapterMismatch(
                f"{config.base_model} has no module named {', '.join(missing)} "
                f"(target_modules); it has e.g. {', '.join(sorted(present)[:12])}"
            )
    return (
        model,
        LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            layers_to_transform=_last_layers(model, config),
            task_type="CAUSAL_LM",
        ),
        None,
    )


def _last_layers(model, config: TrainConfig) -> list[int] | None:
    """The indices of the last ``lora_layers`` transformer layers, or None for every layer."""
    if not config.lora_layers:
        return None
    total = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(total, int):
        raise AdapterMismatch(
            f"{config.base_model} does not say how many layers it has (num_hidden_layers); "
            "set lora_layers to 0"
        )
    if config.lora_layers > total:
        raise AdapterMismatch(
            f"lora_layers is {config.lora_layers} but {config.base_model} has {total} layers; "
            f"set at most {total} (or 0 for every layer)"
        )
    return list(range(total - config.lora_layers, total))


# --- the TRL trainer ------------------------------------------------------------------------


def computes_in_bf16(precision: str, *, cuda: bool) -> bool:
    """Whether training computes in bfloat16 for ``TrainConfig.precision`` on this machine.

    fp32 never does. auto does on a GPU that reports bf16, and never on a CPU: there bf16 trained 1.4x
    faster but taught less in the defaults' teaching benchmark (docs/decisions.md), so it is asked for
    by name. bf16 does where the hardware has bf16 arithmetic: such a GPU, or a CPU with AVX512-BF16 or
    AMX tiles; elsewhere (older x86, Arm) a CPU would only emulate it, and ``train()`` refuses it.
    """
    if precision == "fp32":
        return False
    if cuda:
        return bool(torch.cuda.is_bf16_supported())
    if precision == "auto":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private but stable
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def trainer_args(
    config: TrainConfig, checkpoints: Path, *, evaluate: bool, cuda: bool, bf16: bool
) -> dict[str, Any]:
    """The arguments every method's TRL config shares (SFTConfig, DPOConfig, KTOConfig).

    ``report_to`` and ``run_name`` come from the config; tensorboard writes into
    ``checkpoints.parent / "tensorboard"`` (:func:`tensorboard_dir`), which ``_build_trainer`` tells
    transformers' callback, since transformers 5 dropped ``logging_dir`` from the arguments.
    """
    args: dict[str, Any] = {
        "output_dir": str(checkpoints),
        "seed": config.seed,
        "data_seed": config.seed,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": config.warmup_ratio,  # transformers 5 reads a value below 1 as a ratio
        "num_train_epochs": config.num_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "logging_steps": 1,
        "logging_nan_inf_filter": False,  # the default hides a NaN loss behind the running average
        "save_strategy": "steps",
        "save_steps": config.checkpoint_every,
        "save_total_limit": 2,
        "eval_strategy": "steps" if evaluate else "no",
        "eval_steps": config.checkpoint_every,
        "bf16": bf16,
        "fp16": False,
        "use_cpu": not cuda,
        # Recomputing activations saves GPU memory; on a CPU it only costs time (~20%). transformers 5 renamed
        # gradient_checkpointing (TRL still defaults that old name to True, with a FutureWarning).
        "activation_checkpointing": cuda,
        "report_to": config.report_to,  # train() has failed already if its package is missing
        "run_name": config.run_name,
        "push_to_hub": False,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        # Under DDP (training/core/launch.py): every LoRA weight gets a gradient each step, so skip the graph
        # walk that looks for unused ones (a PeftModel is no PreTrainedModel, so the Trainer would do it).
        "ddp_find_unused_parameters": False,
    }
    return args


def tensorboard_dir(checkpoints: Path) -> Path:
    """Where a run's tensorboard events go: beside its checkpoints, in the job's folder."""
    return Path(checkpoints).parent / TENSORBOARD_DIRNAME


def _build_trainer(
    config: TrainConfig,
    model,
    tokenizer,
    peft_config,
    train_dataset,
    eval_dataset,
    checkpoints: Path,
    watcher: _ProgressCallback,
    *,
    cuda: bool,
    bf16: bool,
    share_prefixes: bool = False,
):
    common = trainer_args(config, checkpoints, evaluate=eval_dataset is not None, cuda=cuda, bf16=bf16)
    inputs = {
        "model": model,
        "train_dataset": train_dataset,
        "eval_dataset": eval_dataset,
        "processing_class": tokenizer,
        "peft_config": peft_config,
        "callbacks": [watcher],
    }
    if config.method == "sft":
        # TRL refuses padding_free with a max_length unless packing; we truncate after its preparation.
        args = SFTConfig(
            **common, completion_only_loss=True, padding_free=True, packing=False, max_length=None
        )
        sft = _SFTTrainer(args=args, **inputs)
        sft.train_dataset = _truncate(sft.train_dataset, config.max_seq_length)
        if share_prefixes:  # the model attends per sequence, so a row may hold a shared prefix once
            sft.data_collator = SharedPrefixCollator(sft.data_collator)
        watcher.more_tokens = lambda: sft.shared_prefix_tokens
        trainer: transformers.Trainer = sft
        if trainer.eval_dataset is not None:
            trainer.eval_dataset = _truncate(trainer.eval_dataset, config.max_seq_length)
    elif config.method == "dpo":
        dpo_args = DPOConfig(**common, beta=config.dpo_beta, max_length=config.max_seq_length)
        trainer = DPOTrainer(args=dpo_args, **inputs)
    else:
        kto_args = KTOConfig(**common, beta=config.dpo_beta, max_length=config.max_seq_length)
        trainer = KTOTrainer(args=kto_args, **inputs)
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; progress() reports instead
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):  # it reads its folder when training begins
            callback.logging_dir = str(tensorboard_dir(checkpoints))
    return trainer


class _SFTTrainer(SFTTrainer):
    """TRL's SFTTrainer; it also counts the tokens that shared prefixes stood for in training batches.

    TRL counts a padding-free batch's positions; a prefix shared by n examples is one position for n
    tokens of data, and tokens/s and ``tokens`` stay about the data, whatever the layout.
    """

    shared_prefix_tokens = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:  # summed over processes, as TRL sums its own count (launch.py runs several)
            saved = torch.tensor(shared_prefix_tokens_saved(inputs), device=inputs["input_ids"].device)
            self.shared_prefix_tokens += int(self.accelerator.gather_for_metrics(saved).sum().item())
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def _truncate(dataset, max_length: int):
    """Keep the first ``max_length`` tokens; drop examples left without any labelled token."""
    dataset = dataset.map(
        lambda ex: {"input_ids": ex["input_ids"][:max_length], "labels": ex["labels"][:max_length]}
    )
    return dataset.filter(lambda ex: any(label != -100 for label in ex["labels"]))


class _ProgressCallback(TrainerCallback):
    """Adapts Trainer callbacks to ``progress``/``should_stop``; watches for NaN/inf; saves our config."""

    def __init__(
        self,
        config: TrainConfig,
        progress: Callable[[ProgressEvent], None] | None,
        should_stop: Callable[[], bool] | None,
        *,
        tokens_before: int,
    ) -> None:
        self.config, self.progress, self.should_stop = config, progress, should_stop
        self.cancelled = False
        self.failure: str | None = None
        self.step = self.first_step = 0
        self.is_main = True
        self.tokens_before = tokens_before  # from earlier runs of this job (TRL's counter restarts at 0)
        self.session_tokens = 0
        self.more_tokens: Callable[[], int] = lambda: 0  # training tokens TRL's count leaves out
        self.first_loss: float | None = None
        self.last_event: ProgressEvent | None = None
        self.last_eval_loss: float | None = None

    @property
    def tokens(self) -> int:
        return self.tokens_before + self.session_tokens

    def on_train_begin(self, args, state, control, **kwargs):
        self.is_main = state.is_world_process_zero  # under accelerate launch, one report per step
        self.step = self.first_step = state.global_step
        self.began = self.step_began = time.monotonic()

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_began = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        # A cancel on the very last step changes nothing: the run is complete.
        if self.should_stop is not None and state.global_step < state.max_steps and self.should_stop():
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = True  # keep this step's state to resume from

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            bad = _non_finite(logs["loss"], "loss") or _non_finite(logs.get("grad_norm"), "gradient norm")
            if bad:
                self.failure = f"{bad} at step {state.global_step}"
                control.should_training_stop = True
                control.should_save = control.should_evaluate = False  # don't checkpoint poisoned weights
                return
            now = time.monotonic()
            # TRL's count of the positions trained so far, plus what shared prefixes stood for
            tokens = self.session_tokens
            if "num_tokens" in logs:
                tokens = int(logs["num_tokens"]) + self.more_tokens()
            # This step's own time: checkpoint saves and evaluations between steps don't count.
            per_s = (tokens - self.session_tokens) / max(now - self.step_began, 1e-9)
            self.session_tokens = tokens
            done = max(state.global_step - self.first_step, 1)
            eta = (state.max_steps - state.global_step) * (now - self.began) / done
            loss = float(logs["loss"])
            self.first_loss = loss if self.first_loss is None else self.first_loss
            self.last_event = ProgressEvent(
                step=state.global_step,
                total_steps=state.max_steps,
                loss=loss,
                learning_rate=float(logs.get("learning_rate", 0.0)),
                grad_norm=float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
                tokens_per_s=round(per_s, 1),
                eta_s=round(eta, 1),
                epoch=float(state.epoch or 0.0),
            )
            self._emit(self.last_event)
        elif "eval_loss" in logs and self.last_event is not None:
            self.last_eval_loss = float(logs["eval_loss"])
            self._emit(replace(self.last_event, eval_loss=self.last_eval_loss))

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():  # one writer, as for the checkpoint itself
            self.config.save(folder)
            (folder / STATE_FILENAME).write_text(json.dumps({"tokens_seen": self.tokens}) + "\n")

    def _emit(self, event: ProgressEvent) -> None:
        if self.progress is not None and self.is_main:
            self.progress(event)

    def metrics(self, state, started: float, train_records: int, eval_records: int) -> dict[str, Any]:
        return {
            "method": self.config.method,
            "base_model": self.config.base_model,
            "steps": state.global_step,
            "total_steps": state.max_steps,
            "epochs": round(float(state.epoch or 0.0), 4),
            "first_loss": self.first_loss,
            "final_loss": self.last_event.loss if self.last_event else None,
            "final_eval_loss": self.last_eval_loss,
            "tokens": self.tokens,
            "runtime_s": round(time.monotonic() - started, 2),
            "resumed_from_step": self.first_step or None,
            "train_records": train_records,
            "eval_records": eval_records,
        }


def _non_finite(value: Any, name: str) -> str | None:
    if value is None or math.isfinite(float(value)):
        return None
    return f"{name} became {'nan' if math.isnan(float(value)) else 'inf'}"


# --- checkpoints and the adapter folder -----------------------------------------------------


def _latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete ``checkpoint-N``: a save cut short lacks trainer_state.json or our config,
    which are written last."""
    if not checkpoints.is_dir():
        return None
    found = [
        (int(p.name.split("-")[1]), p)
        for p in checkpoints.glob("checkpoint-*")
        if p.name.split("-")[1].isdigit()
        and (p / "trainer_state.json").is_file()
        and (p / CONFIG_FILENAME).is_file()
    ]
    return max(found)[1] if found else None


def _config_changes(config: TrainConfig, checkpoint: Path) -> list[str]:
    try:
        saved = TrainConfig.load(checkpoint)
    except (OSError, ValueError, TypeError):
        return ["unreadable teachloop_train_config.json"]
    return config.training_differences(saved)


def _tokens_seen(checkpoint: Path | None) -> int:
    if checkpoint is None or not (checkpoint / STATE_FILENAME).is_file():
        return 0
    return int(json.loads((checkpoint / STATE_FILENAME).read_text()).get("tokens_seen", 0))


def _save_adapter(trainer, tokenizer, config: TrainConfig, metrics: dict[str, Any], folder: Path) -> Path:
    """Write the adapter folder next to its final place, then swap it in (a crash leaves the old one)."""
    accelerator = trainer.accelerator
    if accelerator.is_main_process:  # under accelerate launch every rank holds the same adapter
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model = accelerator.unwrap_model(trainer.model)
        # Only our adapter: DPO/KTO add a frozen "ref" copy when continuing from a parent adapter.
        model.save_pretrained(str(partial), selected_adapters=["default"])
        tokenizer.save_pretrained(str(partial))  # with the chat template, so inference formats prompts alike
        config.save(partial)
        (partial / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (partial / "README.md").write_text(_model_card(config, metrics))  # replaces peft's generic card
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    accelerator.wait_for_everyone()
    return folder


def _model_card(config: TrainConfig, metrics: dict[str, Any]) -> str:
    base = config.base_model
    base_yaml = base if re.fullmatch(r"[\w./-]+", base) and not base.startswith("-") else json.dumps(base)
    loss = metrics.get("final_loss")
    return "\n".join(
        [
            "---",
            f"base_model: {base_yaml}",
            "library_name: peft",
            "pipeline_tag: text-generation",
            "tags:",
            "- teachloop",
            "- lora",
            f"- {config.method}",
            "- trl",
            "---",
            "",
            "# TeachLoop LoRA adapter",
            "",
            f"A LoRA adapter for `{base}`, trained by TeachLoop with {config.method.upper()} "
            f"({metrics.get('steps')} steps, {metrics.get('train_records')} records"
            + (f", final loss {loss:.4f}" if isinstance(loss, float) else "")
            + f"; status: {metrics.get('status')}).",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f"base = AutoModelForCausalLM.from_pretrained({base!r})",
            'model = PeftModel.from_pretrained(base, "path/to/this/folder")',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")  # with the chat template used',
            "```",
            "",
            "Training settings are in `teachloop_train_config.json`, results in `metrics.json`.",
            "",
        ]
    )


def _failed(reason: str, checkpoints: Path, metrics: dict[str, Any] | None = None) -> TrainResult:
    metrics = {**(metrics or {}), "status": "failed"}
    return TrainResult("failed", reason, None, metrics, _latest_checkpoint(checkpoints))


def _out_of_memory(exc: BaseException) -> bool:
    # A failed CPU allocation is a plain RuntimeError from c10's DefaultCPUAllocator, not OutOfMemoryError.
    return isinstance(exc, torch.OutOfMemoryError) or "DefaultCPUAllocator: can't allocate memory" in str(exc)

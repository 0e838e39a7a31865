"""The training engine on a tiny random Llama: real LoRA training, a few steps at a time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import training.core.trainer as engine
from training.core.config import TrainConfig
from training.core.errors import first_line
from training.core.trainer import ProgressEvent, train


def chat_records(n: int = 8) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i}+{i}?"},
                {"role": "assistant", "content": f"The answer is {2 * i}."},
            ]
        }
        for i in range(n)
    ]


def quick(base: Path, **overrides) -> TrainConfig:
    """A few fast steps: no warmup (one warmup step would train at lr 0), no periodic checkpoints."""
    settings = {
        "base_model": str(base),
        "max_steps": 3,
        "batch_size": 4,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "checkpoint_every": 100,
        "lora_r": 8,
        "lora_alpha": 16,
    }
    return TrainConfig(**{**settings, **overrides})


class Recorder:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> None:
        self.events.append(event)

    @property
    def steps(self) -> list[int]:
        return [e.step for e in self.events if e.eval_loss is None]


def spy_on(monkeypatch, name: str) -> list:
    """Record the first argument (or the result, for _build_trainer) of an engine function."""
    seen: list = []
    real = getattr(engine, name)

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append(result if name == "_build_trainer" else args[0])
        return result

    monkeypatch.setattr(engine, name, spy)
    return seen


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny model gains nothing from threads, and OpenMP threads spin and crawl when another process
    holds a core (seen here: a 1 s test taking 15 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """One short SFT run shared by the tests that only inspect its output."""
    output = tmp_path_factory.mktemp("trained")
    result = train(quick(tiny_model_dir, max_steps=4), chat_records(), output)
    assert result.status == "succeeded", result.reason
    return result


# --- what training does to the weights --------------------------------------------------


def test_it_changes_lora_weights_and_leaves_base_weights_unchanged(tiny_model_dir, tmp_path, monkeypatch):
    saved = spy_on(monkeypatch, "_save_adapter")
    result = train(quick(tiny_model_dir), chat_records(), tmp_path)
    assert result.status == "succeeded", result.reason

    original = load_file(str(tiny_model_dir / "model.safetensors"))
    trained_base = saved[0].model.get_base_model().state_dict()
    base_weights = {k.replace(".base_layer", ""): v for k, v in trained_base.items() if "lora_" not in k}
    assert set(base_weights) == set(original)
    # On a GPU the base is loaded in bf16: unchanged means equal to the original cast to that dtype.
    assert all(torch.equal(base_weights[k].cpu(), original[k].to(base_weights[k].dtype)) for k in original)

    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert adapter and all("lora_" in key for key in adapter)  # nothing of the base is saved
    lora_b = [t for k, t in adapter.items() if "lora_B" in k]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # peft starts B at zero
    # Every projection of a llama layer is adapted by default.
    assert {k.split(".")[-3] for k in adapter} >= {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


def test_it_lowers_the_loss_on_a_memorisable_dataset(tiny_model_dir, tmp_path):
    recorder = Recorder()
    result = train(quick(tiny_model_dir, max_steps=40), chat_records() * 2, tmp_path, progress=recorder)
    assert result.status == "succeeded", result.reason
    losses = [e.loss for e in recorder.events]
    assert recorder.steps == list(range(1, 41))
    assert losses[-1] < losses[0] / 3, losses
    assert result.metrics["final_loss"] == losses[-1] and result.metrics["first_loss"] == losses[0]
    last = recorder.events[-1]
    assert last.total_steps == 40 and last.tokens_per_s > 0 and last.eta_s == 0 and last.epoch > 1
    assert last.learning_rate >= 0 and last.grad_norm is not None


def test_it_puts_labels_on_the_final_assistant_answer_only(tiny_model_dir, tmp_path, monkeypatch):
    trainers = spy_on(monkeypatch, "_build_trainer")
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": "The answer is 5."},
            {"role": "user", "content": "And 7 times 6?"},
            {"role": "assistant", "content": "The answer is 42."},
        ]
    }
    result = train(quick(tiny_model_dir, max_steps=1), [record] * 2, tmp_path)
    assert result.status == "succeeded", result.reason

    trainer = trainers[0]
    tokenizer = trainer.processing_class
    example = trainer.train_dataset[0]
    labelled = [
        token for token, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100
    ]
    assert tokenizer.decode(labelled) == "The answer is 42.<|im_end|>\n"
    assert tokenizer.decode(example["input_ids"]).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    # The labelled tokens are the tail of the sequence: nothing of the prompt carries a label.
    first = next(i for i, label in enumerate(example["labels"]) if label != -100)
    assert all(label != -100 for label in example["labels"][first:])
    assert "The answer is 5." not in tokenizer.decode(labelled)


def test_it_trains_padding_free_with_the_same_loss_as_padding(tiny_model_dir):
    """transformers 5 turns restarting position_ids into a block-diagonal mask for sdpa and eager."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [
        "What is 2+3? The answer is 5.",
        "Hello!",
        "The capital of France is Paris. The capital of Italy is Rome.",
    ]
    examples = [{"input_ids": tokenizer(t)["input_ids"]} for t in texts]
    assert len({len(e["input_ids"]) for e in examples}) == 3
    for attention in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attention)
        model.config.use_cache = False
        losses = {}
        for padding_free in (False, True):
            batch = DataCollatorForLanguageModeling(
                pad_token_id=tokenizer.pad_token_id, padding_free=padding_free
            )(examples)
            with torch.no_grad():
                losses[padding_free] = model(**batch).loss.item()
        assert losses[True] == pytest.approx(losses[False], abs=1e-5), attention


def test_it_truncates_to_max_seq_length_and_drops_records_without_room_for_an_answer(
    tiny_model_dir, tmp_path, monkeypatch
):
    trainers = spy_on(monkeypatch, "_build_trainer")
    long_question = {
        "messages": [
            {"role": "user", "content": "Numbers: " + " ".join(map(str, range(40)))},
            {"role": "assistant", "content": "Many."},
        ]
    }
    records = [*chat_records(4), long_question]
    result = train(quick(tiny_model_dir, max_seq_length=24, max_steps=1), records, tmp_path)
    assert result.status == "succeeded", result.reason
    dataset = trainers[0].train_dataset
    assert len(dataset) == 4
    assert max(len(ids) for ids in dataset["input_ids"]) <= 24

    failed = train(quick(tiny_model_dir, max_seq_length=16, max_steps=1), [long_question], tmp_path / "none")
    assert failed.status == "failed" and "max_seq_length=16" in failed.reason


def test_it_reports_eval_loss_when_asked(tiny_model_dir, tmp_path):
    recorder = Recorder()
    result = train(
        quick(tiny_model_dir, max_steps=4, checkpoint_every=2, eval_fraction=0.25),
        chat_records(),
        tmp_path,
        progress=recorder,
    )
    assert result.status == "succeeded", result.reason
    evals = [e for e in recorder.events if e.eval_loss is not None]
    assert [e.step for e in evals] == [2, 4]
    assert result.metrics["eval_records"] == 2 and result.metrics["train_records"] == 6
    assert result.metrics["final_eval_loss"] == evals[-1].eval_loss


# --- stopping, resuming ------------------------------------------------------------------


def test_it_cancels_within_a_step_and_keeps_a_checkpoint_and_an_adapter(tiny_model_dir, tmp_path):
    recorder = Recorder()
    result = train(
        quick(tiny_model_dir, max_steps=30),
        chat_records(),
        tmp_path,
        progress=recorder,
        should_stop=lambda: bool(recorder.events) and recorder.events[-1].step >= 3,
    )
    assert result.status == "cancelled"
    stopped_at = result.metrics["steps"]
    assert 3 <= stopped_at <= 4
    assert recorder.steps[-1] == stopped_at
    assert result.last_checkpoint == tmp_path / "checkpoints" / f"checkpoint-{stopped_at}"
    assert (result.last_checkpoint / "optimizer.pt").is_file()
    assert TrainConfig.load(result.last_checkpoint).max_steps == 30
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert json.loads((result.adapter_dir / "metrics.json").read_text())["status"] == "cancelled"


def test_it_resumes_from_the_last_checkpoint_after_a_crash(tiny_model_dir, tmp_path):
    config = quick(tiny_model_dir, max_steps=6, checkpoint_every=3)
    first = Recorder()

    def crash_after_step_4() -> bool:
        if first.events and first.events[-1].step >= 4:
            raise RuntimeError("worker lost")
        return False

    with pytest.raises(RuntimeError, match="worker lost"):
        train(config, chat_records(), tmp_path, progress=first, should_stop=crash_after_step_4)
    assert first.steps == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3"]

    second = Recorder()
    result = train(config, chat_records(), tmp_path, progress=second, resume=True)
    assert result.status == "succeeded", result.reason
    assert second.steps == [4, 5, 6]
    assert result.metrics["resumed_from_step"] == 3 and result.metrics["steps"] == 6
    # Same data order and optimizer state: step 4 repeats the crashed run's step 4.
    assert second.events[0].loss == pytest.approx(first.events[3].loss, rel=1e-4)
    assert result.metrics["tokens"] > 0

    restarted = Recorder()
    assert train(config, chat_records(), tmp_path, progress=restarted, resume=False).status == "succeeded"
    assert restarted.steps[0] == 1


def test_it_refuses_to_resume_checkpoints_made_with_other_settings(tiny_model_dir, trained, tmp_path):
    output = tmp_path / "job"
    shutil.copytree(trained.adapter_dir.parent, output)
    other = quick(tiny_model_dir, max_steps=4, learning_rate=5e-3)
    result = train(other, chat_records(), output)
    assert result.status == "failed" and "learning_rate" in result.reason


def test_it_cancels_before_loading_anything_when_asked_at_once(tiny_model_dir, tmp_path):
    result = train(quick(tiny_model_dir), chat_records(), tmp_path, should_stop=lambda: True)
    assert (result.status, result.adapter_dir) == ("cancelled", None)


# --- expected failures -------------------------------------------------------------------


def test_it_fails_when_the_loss_becomes_nan(tiny_model_dir, trained, tmp_path):
    poisoned = tmp_path / "poisoned"
    shutil.copytree(trained.adapter_dir, poisoned)
    weights = load_file(str(poisoned / "adapter_model.safetensors"))
    save_file(
        {k: torch.full_like(v, float("nan")) if "lora_B" in k else v for k, v in weights.items()},
        str(poisoned / "adapter_model.safetensors"),
    )
    recorder = Recorder()
    result = train(
        quick(tiny_model_dir, parent_adapter=str(poisoned)),
        chat_records(),
        tmp_path / "run",
        progress=recorder,
    )
    assert result.status == "failed"
    assert result.reason == "loss became nan at step 1"
    assert result.adapter_dir is None and recorder.events == []
    assert not (tmp_path / "run" / "adapter").exists()


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 2147483648 bytes."
        ),
    ],
    ids=["cuda", "cpu"],
)
def test_it_fails_on_out_of_memory_saying_what_to_turn_down(tiny_model_dir, tmp_path, monkeypatch, error):
    import transformers

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(transformers.Trainer, "training_step", out_of_memory)
    result = train(quick(tiny_model_dir), chat_records(), tmp_path)
    assert result.status == "failed"
    assert "memory at step 1" in result.reason and "batch_size" in result.reason
    assert first_line(error) in result.reason


def test_it_lets_unexpected_errors_propagate(tiny_model_dir, tmp_path, monkeypatch):
    import transformers

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(transformers.Trainer, "training_step", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        train(quick(tiny_model_dir), chat_records(), tmp_path)


def test_it_fails_on_conversations_when_the_base_has_no_chat_template(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    base = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, base)
    (base / "chat_template.jinja").unlink()
    assert not AutoTokenizer.from_pretrained(base).chat_template
    result = train(quick(base), chat_records(), tmp_path / "run")
    assert result.status == "failed" and "no chat template" in result.reason

    from tests.tiny_model import CHAT_TEMPLATE

    supplied = train(quick(base, chat_template=CHAT_TEMPLATE, max_steps=1), chat_records(), tmp_path / "run2")
    assert supplied.status == "succeeded", supplied.reason
    assert "<|im_start|>" in (supplied.adapter_dir / "chat_template.jinja").read_text()


def test_it_fails_naming_the_bad_record(tiny_model_dir, tmp_path):
    records = [*chat_records(2), {"messages": [{"role": "user", "content": "no answer"}]}]
    result = train(quick(tiny_model_dir), records, tmp_path)
    assert result.status == "failed"
    assert result.reason.startswith("invalid dataset: record 3:")
    empty = train(quick(tiny_model_dir), [], tmp_path)
    assert empty.reason == "invalid dataset: the dataset is empty: no records"


def test_it_fails_when_the_parent_adapter_does_not_fit_the_base(tiny_model_dir, trained, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    narrow = tmp_path / "narrow-llama"
    config = LlamaConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size, config.head_dim = 32, 64, 8
    LlamaForCausalLM(config).save_pretrained(narrow)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(narrow)

    result = train(quick(narrow, parent_adapter=str(trained.adapter_dir)), chat_records(), tmp_path / "run")
    assert result.status == "failed"
    assert f"parent adapter {trained.adapter_dir}" in result.reason and "does not fit" in result.reason
    assert "in the adapter but" in result.reason  # names a tensor and both shapes

    nowhere = quick(tiny_model_dir, parent_adapter=str(tmp_path / "nowhere"))
    missing = train(nowhere, chat_records(), tmp_path / "r2")
    assert missing.status == "failed" and "missing" in missing.reason


def test_it_fails_when_the_chat_template_rejects_a_record(tiny_model_dir, tmp_path):
    from tests.tiny_model import CHAT_TEMPLATE

    no_system = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}" + CHAT_TEMPLATE
    )
    records = [{"messages": [{"role": "system", "content": "Be brief."}, *chat_records(1)[0]["messages"]]}]
    result = train(quick(tiny_model_dir, chat_template=no_system), records, tmp_path)
    assert result.status == "failed" and "System role not supported" in result.reason


def test_it_fails_for_target_modules_the_model_lacks(tiny_model_dir, tmp_path):
    result = train(quick(tiny_model_dir, target_modules=["q_proj", "c_attn"]), chat_records(), tmp_path)
    assert result.status == "failed" and "c_attn" in result.reason


def test_it_adapts_only_the_last_layers_when_asked(tiny_model_dir, tmp_path):
    result = train(quick(tiny_model_dir, lora_layers=1), chat_records(), tmp_path)
    assert result.status == "succeeded", result.reason
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    # The tiny model has 2 layers: only layer 1 carries LoRA weights, every projection of it.
    assert {k.split(".layers.")[1].split(".")[0] for k in adapter} == {"1"}
    assert len({k.split(".")[-3] for k in adapter}) == 7


def test_it_fails_clearly_when_lora_layers_exceeds_the_model(tiny_model_dir, tmp_path):
    result = train(quick(tiny_model_dir, lora_layers=3), chat_records(), tmp_path)
    assert result.status == "failed"
    assert "lora_layers is 3" in result.reason and "has 2 layers" in result.reason


def _losses(config: TrainConfig, tmp_path: Path) -> tuple[list[float], Path]:
    events: list[ProgressEvent] = []
    result = train(config, chat_records(), tmp_path, progress=events.append)
    assert result.status == "succeeded", result.reason
    return [e.loss for e in events], result.adapter_dir


def _no_cpu_bf16(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


@pytest.mark.skipif(
    torch.cuda.is_available() or not engine.computes_in_bf16("bf16", cuda=False),
    reason="needs a CPU with bf16 arithmetic",
)
def test_bf16_on_a_cpu_that_has_it_computes_in_bf16_and_keeps_the_lora_weights_in_fp32(
    tiny_model_dir, tmp_path
):
    fp32, _ = _losses(quick(tiny_model_dir, precision="fp32"), tmp_path / "fp32")
    bf16, adapter = _losses(quick(tiny_model_dir, precision="bf16"), tmp_path / "bf16")
    # The arithmetic changed (bf16 base, autocast) but only by bf16 rounding, and the saved adapter is fp32.
    assert bf16 != fp32
    assert bf16 == pytest.approx(fp32, rel=0.05)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_auto_precision_trains_in_fp32_on_a_cpu_whatever_it_has(tiny_model_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU")
    assert not engine.computes_in_bf16("auto", cuda=False)
    fp32, _ = _losses(quick(tiny_model_dir, precision="fp32"), tmp_path / "fp32")
    auto, _ = _losses(quick(tiny_model_dir), tmp_path / "auto")
    assert auto == fp32


def test_bf16_precision_fails_clearly_where_the_cpu_has_none(tiny_model_dir, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU")
    _no_cpu_bf16(monkeypatch)
    result = train(quick(tiny_model_dir, precision="bf16"), chat_records(), tmp_path)
    assert result.status == "failed"
    assert "no bfloat16 arithmetic" in result.reason and "auto or fp32" in result.reason


# --- the adapter folder ------------------------------------------------------------------


def test_it_writes_an_adapter_that_plain_peft_loads_in_a_fresh_process(tiny_model_dir, trained):
    adapter = trained.adapter_dir
    code = textwrap.dedent(f"""
        import sys, torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
        base = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r})
        tokenizer = AutoTokenizer.from_pretrained({str(adapter)!r})
        text = tokenizer.apply_chat_template([{{"role": "user", "content": "What is 1+1?"}}], tokenize=False,
                                             add_generation_prompt=True)
        assert text.endswith("<|im_start|>assistant\\n"), text
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            before = base(ids).logits
        model = PeftModel.from_pretrained(base, {str(adapter)!r})
        with torch.no_grad():
            after = model(ids).logits
        assert not torch.allclose(before, after)
        assert not [m for m in sys.modules if m.split(".")[0] in ("training", "teachloop", "tests")]
        print("loaded", type(model).__name__)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd="/tmp", env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded PeftModelForCausalLM" in done.stdout


def test_it_writes_config_metrics_tokenizer_and_a_model_card(tiny_model_dir, trained):
    folder = trained.adapter_dir
    assert folder == folder.parent / "adapter"
    names = {p.name for p in folder.iterdir()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "teachloop_train_config.json",
        "metrics.json",
        "README.md",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model_dir)
    assert TrainConfig.load(folder).max_steps == 4

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "succeeded" and metrics["steps"] == 4 and metrics["tokens"] > 0
    assert metrics["final_loss"] > 0 and metrics["runtime_s"] > 0

    card = (folder / "README.md").read_text()
    front_matter = yaml.safe_load(card.split("---\n")[1])
    assert front_matter["base_model"] == str(tiny_model_dir)
    assert front_matter["library_name"] == "peft"
    assert "sft" in front_matter["tags"]


def test_it_continues_training_a_parent_adapter(tiny_model_dir, trained, tmp_path):
    parent = load_file(str(trained.adapter_dir / "adapter_model.safetensors"))
    config = quick(tiny_model_dir, parent_adapter=str(trained.adapter_dir), lora_r=4)
    result = train(config, chat_records(), tmp_path)
    assert result.status == "succeeded", result.reason
    child = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert child.keys() == parent.keys()
    assert all(child[k].shape == parent[k].shape for k in parent)  # the parent's rank (8) is kept, not 4
    assert any(not torch.equal(child[k], parent[k]) for k in parent)


# --- preference methods ------------------------------------------------------------------


def test_it_trains_dpo_on_preference_pairs(tiny_model_dir, tmp_path):
    pairs = [
        {
            "prompt": f"What is {i}+{i}?",
            "chosen": f"The answer is {2 * i}.",
            "rejected": f"The answer is {2 * i + 1}.",
        }
        for i in range(4)
    ]
    pairs.append(
        {
            "prompt": [{"role": "user", "content": "Capital of France?"}],
            "chosen": [{"role": "assistant", "content": "Paris."}],
            "rejected": [{"role": "assistant", "content": "Rome."}],
        }
    )
    recorder = Recorder()
    result = train(
        quick(tiny_model_dir, method="dpo", batch_size=2, learning_rate=1e-3),
        pairs,
        tmp_path,
        progress=recorder,
    )
    assert result.status == "succeeded", result.reason
    assert recorder.steps == [1, 2, 3]
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert "dpo" in (result.adapter_dir / "README.md").read_text()


def test_it_trains_kto_on_labelled_completions(tiny_model_dir, tmp_path):
    examples = [
        {"prompt": f"What is {i}+{i}?", "completion": f"The answer is {2 * i + i % 2}.", "label": i % 2 == 0}
        for i in range(6)
    ]
    recorder = Recorder()
    result = train(
        quick(tiny_model_dir, method="kto", batch_size=2, learning_rate=1e-3),
        examples,
        tmp_path,
        progress=recorder,
    )
    assert result.status == "succeeded", result.reason
    assert recorder.steps == [1, 2, 3]
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()

"""TrainConfig: validated when made, JSON round trip, per-architecture LoRA targets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from training.core.config import ALL_PROJECTIONS, CONFIG_FILENAME, TrainConfig, default_target_modules


def test_it_has_the_documented_defaults():
    config = TrainConfig(base_model="some/model")
    assert (config.method, config.lora_r, config.lora_alpha, config.lora_dropout) == ("sft", 16, 32, 0.0)
    assert (config.learning_rate, config.lr_scheduler, config.max_steps) == (2e-4, "linear", -1)
    assert config.target_modules is None and config.parent_adapter is None
    assert config.eval_fraction == 0.0


def test_it_round_trips_through_json():
    config = TrainConfig(
        base_model="/models/tiny",
        method="dpo",
        parent_adapter="/adapters/v1",
        target_modules=["q_proj", "v_proj"],
        lr_scheduler="cosine",
        max_steps=7,
        dpo_beta=0.2,
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["target_modules"] == ["q_proj", "v_proj"]
    assert TrainConfig.from_dict(data) == config
    assert config.target_modules == ("q_proj", "v_proj")  # frozen and hashable
    hash(config)


def test_it_saves_and_loads_its_json_file(tmp_path):
    config = TrainConfig(base_model="/models/tiny", seed=7)
    path = config.save(tmp_path)
    assert path.name == CONFIG_FILENAME == "teachloop_train_config.json"
    assert TrainConfig.load(tmp_path) == config


@pytest.mark.parametrize(
    "field, value",
    [
        ("base_model", ""),
        ("method", "ppo"),
        ("lora_r", 0),
        ("lora_r", 10**6),  # two 10**6 x hidden matrices per projection: a worker killed for memory
        ("lora_alpha", 1.5),
        ("lora_dropout", 1.0),
        ("lora_layers", -1),
        ("lora_layers", 1.5),
        ("target_modules", []),
        ("learning_rate", 0),
        ("learning_rate", float("nan")),
        ("lr_scheduler", "step"),
        ("precision", "fp16"),
        ("warmup_ratio", 1.0),
        ("num_epochs", 0),
        ("max_steps", 0),
        ("max_steps", -2),
        ("max_steps", 10**30),  # queued, then refused by the trainer
        ("seed", 10**30),  # torch refuses seeds above 2**64 - 1; numpy above 2**32 - 1
        ("batch_size", True),
        ("batch_size", 0),
        ("grad_accum", 0),
        ("max_seq_length", 8),
        ("eval_fraction", 1.0),
        ("checkpoint_every", 0),
        ("dpo_beta", -0.1),
    ],
)
def test_it_rejects_a_bad_value_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field} "):
        TrainConfig(**{"base_model": "m", field: value})


def test_it_requires_two_examples_per_batch_for_kto():
    with pytest.raises(ValueError, match="batch_size must be at least 2 for kto"):
        TrainConfig(base_model="m", method="kto", batch_size=1)
    assert TrainConfig(base_model="m", method="kto", batch_size=2).batch_size == 2


def test_it_rejects_unknown_keys_from_json():
    with pytest.raises(ValueError, match=r"unknown training setting.*learnin_rate"):
        TrainConfig.from_dict({"base_model": "m", "learnin_rate": 0.1})


def test_it_is_frozen():
    config = TrainConfig(base_model="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lora_r = 8  # type: ignore[misc]


def test_it_names_the_fields_that_differ():
    a = TrainConfig(base_model="m")
    assert a.differences(TrainConfig(base_model="m", lora_r=8, seed=1)) == ["lora_r", "seed"]


def test_it_targets_every_projection_of_known_architectures_and_defers_to_peft_otherwise():
    assert default_target_modules("llama") == list(ALL_PROJECTIONS)
    assert default_target_modules("qwen2") == default_target_modules("mistral") == list(ALL_PROJECTIONS)
    assert default_target_modules("gpt2") is None


def test_every_setting_says_what_it_does():
    from dataclasses import fields

    from training.core.fields import setting_help
    from tutor.core.runs.state import RunConfig

    for config in (TrainConfig, RunConfig):
        for f in fields(config):
            assert len(setting_help(config, f.name)) > 10, (config.__name__, f.name)

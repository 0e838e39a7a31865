"""Fixtures for the plain-Python core tests (they also run with ``-p no:django``).

``tiny_model_dir`` (a tiny random Llama built once per session) and ``model_cache_dir`` come from
``tests/conftest.py``; these build on them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """The tiny model written as an F32 llama GGUF file."""
    from tests.tiny_model import write_tiny_gguf

    return write_tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """A saved LoRA adapter (r=4 on q_proj/v_proj) whose weights visibly change the model's output."""
    from tests.tiny_model import build_tiny_lora

    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("tiny-lora"))


@pytest.fixture(scope="module")
def tiny_llm(tiny_model_dir: Path):
    """One loaded LocalLLM on the tiny model, shared by a test module (no adapters loaded on it)."""
    from tests.tiny_model import tiny_spec
    from training.core.llm.local import LocalLLM

    llm = LocalLLM(tiny_spec(tiny_model_dir))
    yield llm
    llm.close()

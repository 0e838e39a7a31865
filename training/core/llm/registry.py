"""One loaded copy of each model per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from .base import LLM, ModelSpec

_cache: dict[tuple, LLM] = {}
_lock = threading.Lock()


def get_llm(
    spec: ModelSpec, *, cache_dir: Path | None = None, progress: Callable[[str], None] | None = None
) -> LLM:
    """Return the process-wide instance for ``spec``, loading it on first use.

    ``cache_dir`` holds converted copies of GGUF models; ``progress`` receives
    human-readable messages while a slow load happens.
    """
    key = spec.cache_key
    with _lock:
        llm = _cache.get(key)
        if llm is None:
            llm = _build(spec, cache_dir=cache_dir, progress=progress)
            _cache[key] = llm
        return llm


def _build(spec: ModelSpec, *, cache_dir: Path | None, progress: Callable[[str], None] | None) -> LLM:
    if spec.backend == "openai":
        from .openai_compat import OpenAICompatLLM

        return OpenAICompatLLM(spec)
    from .local import LocalLLM

    return LocalLLM(spec, cache_dir=cache_dir, progress=progress)


def forget(spec: ModelSpec | None = None) -> None:
    """Drop one cached model (or all): used after a registry edit and by tests."""
    with _lock:
        keys = [spec.cache_key] if spec is not None else list(_cache)
        for key in keys:
            llm = _cache.pop(key, None)
            if llm is not None:
                llm.close()

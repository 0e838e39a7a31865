"""Language-model backends behind one interface (see :mod:`.base`)."""

from .base import (
    BACKENDS,
    LLM,
    Conversation,
    Generation,
    GenerationError,
    GenerationParams,
    LLMError,
    Message,
    ModelLoadError,
    ModelSpec,
    UnsupportedOperation,
)

__all__ = [
    "BACKENDS",
    "LLM",
    "Conversation",
    "Generation",
    "GenerationError",
    "GenerationParams",
    "LLMError",
    "Message",
    "ModelLoadError",
    "ModelSpec",
    "UnsupportedOperation",
]

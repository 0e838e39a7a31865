"""The one interface every caller uses to talk to a language model.

Backends: :mod:`.local` (transformers, Hugging Face folders/ids and GGUF files) and
:mod:`.openai_compat` (any OpenAI-compatible HTTP server). Construct them through
:func:`training.core.llm.registry.get_llm`, which caches one loaded copy per model per process.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, str]
"""One chat message: ``{"role": "system"|"user"|"assistant", "content": "..."}``."""
Conversation = list[Message]

Backend = Literal["transformers", "gguf", "openai"]
BACKENDS: tuple[str, ...] = ("transformers", "gguf", "openai")


class LLMError(Exception):
    """A model could not do what was asked. The message names the model and the cause."""

    def __init__(self, model: str, cause: str) -> None:
        self.model = model
        self.cause = cause
        super().__init__(f"{model}: {cause}")


class ModelLoadError(LLMError):
    """The model could not be loaded or reached (missing file, no network, wrong URL)."""


class GenerationError(LLMError):
    """The model was loaded/reachable but generation failed (timeout, server error, bad reply)."""


class UnsupportedOperation(LLMError):
    """The backend cannot do this (for example log-likelihoods over an HTTP chat API)."""


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationParams:
    """How to sample. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 32768:
            raise ValueError(f"max_new_tokens must be between 1 and 32768, got {self.max_new_tokens}")
        if not (0.0 <= self.temperature <= 5.0) or math.isnan(self.temperature):
            raise ValueError(f"temperature must be between 0 and 5, got {self.temperature}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if isinstance(self.stop, str):  # a common slip: stop="\n" instead of stop=("\n",)
            object.__setattr__(self, "stop", (self.stop,))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes: Any) -> GenerationParams:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Generation:
    """One generated completion; its text never holds a NUL character (:func:`without_nul`)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason = "stop"

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", without_nul(self.text))


def without_nul(text: str) -> str:
    """``text`` without NUL characters: a model may emit them, they never carry meaning, and
    PostgreSQL text columns refuse them. Every backend's generated and streamed text passes here."""
    return text.replace("\x00", "")


TOKEN_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load or reach a model; built by the Django registry from its row.

    ``source`` is a Hugging Face id or local folder (``transformers``), a path to a ``.gguf``
    file (``gguf``), or the model name on the server (``openai``).
    """

    name: str
    backend: Backend
    source: str
    base_url: str = ""
    api_key_env: str = ""
    chat_template: str = ""
    defaults: GenerationParams = field(default_factory=GenerationParams)
    timeout_s: float = 120.0
    max_retries: int = 3
    # openai only: the request field of the reply's length ("max_tokens", which most servers read,
    # or "max_completion_tokens", which OpenAI's newest models require), and whether to send
    # temperature and top_p (some of those models accept only their own sampling).
    token_limit_field: str = "max_tokens"
    send_sampling: bool = True

    def __post_init__(self) -> None:
        if self.token_limit_field not in TOKEN_LIMIT_FIELDS:
            raise ValueError(
                f"token_limit_field must be one of {', '.join(TOKEN_LIMIT_FIELDS)}, "
                f"not {self.token_limit_field!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if not self.source:
            raise ValueError("source is required (model id, folder, GGUF file or served model name)")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("the openai backend needs a base_url")

    @property
    def cache_key(self) -> tuple:
        return (
            self.backend,
            self.source,
            self.base_url,
            self.api_key_env,
            self.chat_template,
            self.timeout_s,
            self.max_retries,
        )


class LLM(abc.ABC):
    """A language model. Implementations are thread-safe."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def _params(self, params: GenerationParams | None) -> GenerationParams:
        return params if params is not None else self.spec.defaults

    @abc.abstractmethod
    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> list[Generation]:
        """Complete each conversation (batched where the backend can), in input order."""

    @abc.abstractmethod
    def stream(
        self,
        conversation: Conversation,
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> Iterator[str]:
        """Yield the reply to one conversation piece by piece as it is generated."""

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of log-probabilities of each ``continuation`` given its ``prompt``.

        Used for multiple-choice scoring. Only local models can do this.
        """
        raise UnsupportedOperation(self.name, f"the {self.spec.backend} backend cannot score log-likelihoods")

    def reply_loglikelihood(
        self, requests: Sequence[tuple[Conversation, str]], *, adapter: str | None = None
    ) -> list[float]:
        """Sum of log-probabilities of each ``reply`` as the assistant's answer to its conversation.

        Used to answer multiple-choice items by likelihood. Only local models can do this.
        """
        raise UnsupportedOperation(self.name, f"the {self.spec.backend} backend cannot score log-likelihoods")

    def load_adapter(self, name: str, path: str) -> None:
        """Load a LoRA adapter under ``name`` (then pass ``adapter=name`` to generate)."""
        raise UnsupportedOperation(self.name, f"the {self.spec.backend} backend cannot load LoRA adapters")

    def close(self) -> None:  # noqa: B027 (optional: most backends hold nothing to release)
        """Release resources (HTTP clients, GPU memory). Safe to call twice."""


def validate_conversation(model: str, conversation: Conversation) -> None:
    """Reject malformed chat messages with a clear error instead of a template crash."""
    if not conversation:
        raise GenerationError(model, "a conversation needs at least one message")
    for i, message in enumerate(conversation):
        if not isinstance(message, dict) or set(message) - {"role", "content"} or "role" not in message:
            raise GenerationError(model, f"message {i} must be a dict with 'role' and 'content'")
        if message["role"] not in ("system", "user", "assistant"):
            raise GenerationError(model, f"message {i} has unknown role {message['role']!r}")
        if not isinstance(message.get("content"), str):
            raise GenerationError(model, f"message {i} content must be text")

"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, LM Studio, OpenAI itself).

Plain Python (no Django): the registry builds one :class:`OpenAICompatLLM` per :class:`ModelSpec`.
Retries, backoff and timeouts are the ``openai`` package's own: every request is retried up to
``spec.max_retries`` times on connection errors, timeouts, 408/409/429 and 5xx, with exponential
backoff (0.5 s doubling, at most 8 s, minus up to 25 % jitter) unless the server sends
``Retry-After``/``retry-after-ms`` (honoured up to 2 minutes; longer means "don't retry").
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from .base import (
    LLM,
    Conversation,
    FinishReason,
    Generation,
    GenerationError,
    GenerationParams,
    LLMError,
    ModelLoadError,
    ModelSpec,
    validate_conversation,
    without_nul,
)

__all__ = ["AdapterLoadError", "OpenAICompatLLM"]

PLACEHOLDER_API_KEY = "not-needed"
"""Sent when no key is configured: local servers ignore it, but the client needs some key."""

MAX_CONCURRENT_REQUESTS = 8
"""Requests in flight per :meth:`OpenAICompatLLM.generate` call; servers batch them internally."""

MAX_SERVER_STOPS = 4
"""The OpenAI API accepts at most 4 stop strings; any further ones are applied locally."""

LORA_LOAD_TIMEOUT_S = 60.0
"""The longest :meth:`OpenAICompatLLM.load_lora_adapter` waits (a person is waiting on the page)."""


class AdapterLoadError(LLMError):
    """The server did not load a LoRA adapter. ``reason`` says why in one word: ``unreachable``,
    ``timeout``, ``disabled`` (no runtime LoRA loading), ``key``, ``not_found`` (no adapter at that
    path, as the server sees it) or ``refused`` (anything else the server said no to)."""

    def __init__(self, model: str, cause: str, *, reason: str) -> None:
        super().__init__(model, cause)
        self.reason = reason


class OpenAICompatLLM(LLM):
    """A model served over the OpenAI chat-completions API at ``spec.base_url``.

    * ``spec.source`` is the model name on the server.
    * ``spec.api_key_env`` names the environment variable holding the API key; it is read at
      every request (so a key set after start-up is picked up). With no name, or the variable
      unset, a placeholder key is sent, which keyless local servers accept.
    * ``adapter="x"`` asks the server for model ``"x"`` instead of ``spec.source``: servers that
      serve LoRA adapters do so under their own model names (vLLM ``--lora-modules x=/path``).
      :meth:`load_adapter` is unsupported: adapters are configured on the server.
    * Log-likelihoods are unsupported (chat APIs don't return prompt log-probabilities).

    Every failure is raised as one :class:`ModelLoadError` (server unreachable, bad key, unknown
    model) or :class:`GenerationError` (timeout, server errors after retries, malformed reply),
    naming the model and the cause and chained to the ``openai`` exception.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None

    # -- client ------------------------------------------------------------------------------

    def _api_key(self) -> str:
        # Called by the openai client before every attempt, so key rotation needs no restart.
        env = self.spec.api_key_env
        return (os.environ.get(env) if env else None) or PLACEHOLDER_API_KEY

    def _get_client(self) -> openai.OpenAI:
        """The shared client (one connection pool); re-created lazily after :meth:`close`."""
        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(
                    base_url=self.spec.base_url,
                    api_key=self._api_key,
                    timeout=self.spec.timeout_s,
                    max_retries=self.spec.max_retries,
                )
            return self._client

    def close(self) -> None:
        """Close the HTTP connection pool. Safe to call twice; a later request reopens it."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- generation --------------------------------------------------------------------------

    def _request(
        self, conversation: Conversation, params: GenerationParams, adapter: str | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": adapter or self.spec.source,
            "messages": [dict(m) for m in conversation],
            # max_tokens by default: max_completion_tokens is unknown to many local servers, and
            # required by OpenAI's newest models (the registry's per-model setting).
            self.spec.token_limit_field: params.max_new_tokens,
        }
        if self.spec.send_sampling:
            request["temperature"], request["top_p"] = params.temperature, params.top_p
        if params.stop:
            request["stop"] = list(params.stop[:MAX_SERVER_STOPS])
        if params.seed is not None:
            request["seed"] = params.seed
        return request

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> list[Generation]:
        """One request per conversation, at most 8 in flight at once; results in input order.

        If any request fails, the first failure (in input order) is raised and requests not
        yet sent are cancelled. Stop strings beyond the API's 4 (and any a server ignores) are
        applied here by truncating the text; token counts are then still the server's.
        """
        p = self._params(params)
        conversations = list(conversations)
        for conversation in conversations:  # all checked before anything is sent
            validate_conversation(self.name, conversation)
        if not conversations:
            return []
        client = self._get_client()
        if len(conversations) == 1:
            return [self._complete(client, conversations[0], p, adapter)]
        pool = ThreadPoolExecutor(
            max_workers=min(MAX_CONCURRENT_REQUESTS, len(conversations)),
            thread_name_prefix=f"llm-{self.name}",
        )
        try:
            futures = [pool.submit(self._complete, client, c, p, adapter) for c in conversations]
            return [f.result() for f in futures]
        finally:
            # On failure don't start queued requests, and don't wait for the ones in flight.
            pool.shutdown(wait=False, cancel_futures=True)

    def _complete(
        self, client: openai.OpenAI, conversation: Conversation, params: GenerationParams, adapter: str | None
    ) -> Generation:
        request = self._request(conversation, params, adapter)
        try:
            completion = client.chat.completions.create(**request)
        except openai.OpenAIError as exc:
            raise self._error(exc, request["model"]) from exc
        try:
            return self._to_generation(completion, params)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise GenerationError(self.name, f"malformed reply from {self.spec.base_url}: {exc}") from exc

    def _to_generation(self, completion: Any, params: GenerationParams) -> Generation:
        # The client does not validate replies (non-strict mode) and non-OpenAI servers vary,
        # so check the few fields we use instead of trusting the types.
        if isinstance(completion, str):  # what the client returns for a non-JSON body
            raise ValueError(f"not JSON: {completion[:80]!r}")
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ValueError("no choices in the reply")
        message = choices[0].message
        if message is None:
            raise ValueError("the first choice has no message")
        text = message.content
        if text is None:
            text = ""  # some servers send null content for an empty reply
        if not isinstance(text, str):
            raise ValueError(f"reply content is {type(text).__name__}, not text")
        finish: FinishReason = "length" if choices[0].finish_reason == "length" else "stop"
        cut = _first_stop(text, params.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        usage = getattr(completion, "usage", None)
        return Generation(
            text=text,
            prompt_tokens=_int(getattr(usage, "prompt_tokens", 0)),
            completion_tokens=_int(getattr(usage, "completion_tokens", 0)),
            finish_reason=finish,
        )

    def stream(
        self,
        conversation: Conversation,
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as the server sends them.

        The conversation is checked now; the request is sent on the first ``next()``. Stopping
        early (``break``, ``close()``, garbage collection) closes the HTTP stream. With stop
        strings, the last few characters are held back until it is clear they don't start one.
        """
        validate_conversation(self.name, conversation)
        p = self._params(params)
        return self._stream(self._request(conversation, p, adapter), p)

    def _stream(self, request: dict[str, Any], params: GenerationParams) -> Iterator[str]:
        client = self._get_client()
        try:
            response = client.chat.completions.create(**request, stream=True)
        except openai.OpenAIError as exc:
            raise self._error(exc, request["model"]) from exc
        stops = _StopScanner(params.stop)
        try:
            for chunk in response:
                piece = without_nul(self._delta(chunk))
                if not piece:
                    continue
                out, stopped = stops.feed(piece)
                if out:
                    yield out
                if stopped:
                    return
            tail = stops.flush()
            if tail:
                yield tail
        except openai.OpenAIError as exc:  # the connection dropped or the server sent an error event
            raise self._error(exc, request["model"]) from exc
        finally:
            response.close()  # releases the connection even when the consumer stopped early

    def _delta(self, chunk: Any) -> str:
        choices = getattr(chunk, "choices", None)
        if choices is None or choices == []:
            return ""  # e.g. a final usage-only chunk
        try:
            content = choices[0].delta.content
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise GenerationError(
                self.name, f"malformed stream chunk from {self.spec.base_url}: {exc}"
            ) from exc
        if content is not None and not isinstance(content, str):
            raise GenerationError(
                self.name,
                f"malformed stream chunk from {self.spec.base_url}: content is {type(content).__name__}",
            )
        return content or ""

    # -- serving LoRA adapters ---------------------------------------------------------------

    def load_lora_adapter(self, name: str, path: str) -> str:
        """Ask a vLLM server to load the LoRA adapter folder ``path`` (as the *server* sees it) and
        serve it as model ``name``; returns the server's one-line reply.

        vLLM's runtime LoRA loading: ``POST {base_url}/load_lora_adapter`` with ``{"lora_name",
        "lora_path"}``, which exists only when the server runs with ``--enable-lora`` and
        ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``. Afterwards ``generate(..., adapter=name)`` (or any
        client asking for model ``name``) gets base + adapter. One attempt, no retries: a load that
        succeeded but whose reply was lost would be refused the second time as "already loaded".
        Every failure is one :class:`AdapterLoadError` naming the cause.
        """
        client = self._get_client().with_options(
            max_retries=0, timeout=min(self.spec.timeout_s, LORA_LOAD_TIMEOUT_S)
        )
        try:
            body = {"lora_name": name, "lora_path": path}
            reply = client.post("/load_lora_adapter", cast_to=str, body=body)
        except openai.OpenAIError as exc:
            raise self._adapter_error(exc, name, path) from exc
        return " ".join(str(reply).split())[:300] or f"loaded {name}"

    def _adapter_error(self, exc: openai.OpenAIError, name: str, path: str) -> AdapterLoadError:
        url = self.spec.base_url
        if isinstance(exc, openai.APITimeoutError):  # subclass of APIConnectionError: check first
            return AdapterLoadError(
                self.name, f"no reply from {url} within {LORA_LOAD_TIMEOUT_S:g} s", reason="timeout"
            )
        if isinstance(exc, openai.APIConnectionError):
            return AdapterLoadError(
                self.name,
                f"cannot reach {url} ({_connection_reason(exc)}) — is the server running?",
                reason="unreachable",
            )
        if not isinstance(exc, openai.APIStatusError):
            return AdapterLoadError(self.name, f"loading adapter '{name}' failed: {exc}", reason="refused")
        status, detail = exc.status_code, _server_message(exc)
        if status == 404 and detail in ("", "Not Found"):  # the web framework's answer: no such route
            return AdapterLoadError(
                self.name,
                f"{url} does not load LoRA adapters at run time: start vLLM with --enable-lora and "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (other servers cannot)",
                reason="disabled",
            )
        if status in (401, 403):
            return AdapterLoadError(
                self.name,
                f"the server rejected the API key ({self._key_hint()}){detail and f': {detail}'}",
                reason="key",
            )
        if status == 404:
            found = f"the server found no adapter at {path}{detail and f': {detail}'}"
            return AdapterLoadError(self.name, found, reason="not_found")
        return AdapterLoadError(
            self.name,
            f"the server refused to load adapter '{name}' ({status}){detail and f': {detail}'}",
            reason="refused",
        )

    # -- errors ------------------------------------------------------------------------------

    def _error(self, exc: openai.OpenAIError, model: str) -> LLMError:
        """Translate an ``openai`` exception into one clear error naming the model and cause."""
        url = self.spec.base_url
        if isinstance(exc, openai.APITimeoutError):  # subclass of APIConnectionError: check first
            return GenerationError(
                self.name, f"no reply from {url} within {self.spec.timeout_s:g} s{_attempts(exc.request)}"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelLoadError(
                self.name,
                f"cannot reach {url} ({_connection_reason(exc)})"
                f"{_attempts(exc.request)} — is the server running?",
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _server_message(exc)
            if status in (401, 403):
                return ModelLoadError(
                    self.name,
                    f"the server rejected the API key ({self._key_hint()}){detail and f': {detail}'}",
                )
            if status == 404:
                return ModelLoadError(
                    self.name,
                    f"model '{model}' not found at {url} (or wrong base URL){detail and f': {detail}'}",
                )
            if status == 429 or status >= 500:
                return GenerationError(
                    self.name,
                    f"the server answered {status}{detail and f' ({detail})'}{_attempts(exc.request)}",
                )
            return GenerationError(
                self.name, f"the server refused the request with {status}{detail and f': {detail}'}"
            )
        if isinstance(exc, openai.APIError):  # e.g. an error event in the middle of a stream
            return GenerationError(self.name, f"the server reported an error: {exc.message}")
        return GenerationError(self.name, f"request failed: {exc}")

    def _key_hint(self) -> str:
        env = self.spec.api_key_env
        if not env:
            return "no key configured: set api_key_env to the name of an environment variable holding it"
        if not os.environ.get(env):
            return f"set env var {env}: it is not set, so a placeholder key was sent"
        return f"set env var {env} to a valid key"


class _StopScanner:
    """Cuts a streamed reply at the first stop string, even one split across pieces."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        # A stop string not yet fully received can only start in the last len(stop)-1 characters.
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buffer = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """Return the text that is safe to emit and whether a stop string was reached."""
        self.buffer += piece
        cut = _first_stop(self.buffer, self.stops)
        if cut is not None:
            out, self.buffer = self.buffer[:cut], ""
            return out, True
        split = max(len(self.buffer) - self.hold, 0)
        out, self.buffer = self.buffer[:split], self.buffer[split:]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest stop string in ``text`` (the stop itself is not part of the reply)."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _attempts(request: Any) -> str:
    """ " after N retries", from the retry counter the openai client puts on every request."""
    try:
        retries = int(request.headers.get("x-stainless-retry-count", ""))
    except (AttributeError, TypeError, ValueError):
        return ""
    return f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries > 0 else ""


def _connection_reason(exc: BaseException) -> str:
    """A short human cause for a connection failure, found in the exception chain."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        text = str(cause).lower()
        if isinstance(cause, ConnectionRefusedError) or "refused" in text:
            return "connection refused"
        if (
            isinstance(cause, socket.gaierror)
            or "name or service not known" in text
            or "nodename nor servname" in text
            or "getaddrinfo" in text
            or "name resolution" in text
        ):
            return "host name not found"
        cause = cause.__cause__ or cause.__context__
    last = seen[-1]
    return f"connection failed: {type(last).__name__}: {last}" if str(last) else "connection failed"


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own error message, if it sent one (OpenAI-style ``{"error": {"message"}}``)."""
    body = exc.body
    message: Any = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error")
    elif isinstance(body, str):
        message = body
    if not isinstance(message, str):
        return ""
    message = " ".join(message.split())
    return message[:300] + ("…" if len(message) > 300 else "")

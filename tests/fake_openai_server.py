"""A tiny fake OpenAI-compatible server for tests (no network beyond 127.0.0.1).

It answers ``POST /v1/chat/completions`` (JSON or SSE streaming) and ``GET /v1/models``
deterministically: the reply is ``"You said: <last user message>"``, cut to ``max_tokens``
words (then ``finish_reason == "length"``) and at the first ``stop`` string. Tests script
failures by queueing canned responses and inspect every request the server received::

    with FakeOpenAIServer(models={"fake-model"}) as server:
        server.fail_next(429, times=1)          # next request is rate-limited, then normal replies
        ...                                      # use server.base_url ("http://127.0.0.1:PORT/v1")
        assert len(server.requests) == 2

Like vLLM with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, it also answers
``POST /v1/load_lora_adapter`` (``{"lora_name", "lora_path"}``: a folder with an
``adapter_config.json`` on this machine becomes a served model of that name) and
``POST /v1/unload_lora_adapter``; with ``lora_updating=False`` those routes do not exist (404
``{"detail": "Not Found"}``, as vLLM's web framework answers).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Canned", "FakeOpenAIServer", "ReceivedRequest"]

# Real servers rarely say how long to wait on 5xx; the fake does (tiny) so that the openai
# client's retries don't sleep its default 0.5 s, 1 s, 2 s ... backoff in tests.
FAST_RETRY_HEADERS = {"retry-after-ms": "10"}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it. ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class Canned:
    """A scripted response used instead of the normal reply for one request.

    ``status``/``body``/``headers`` send that response (``body`` may be a dict, sent as JSON, or
    raw ``bytes``); ``sleep`` first waits that many seconds (a slow server) and then, if
    ``status`` is 0, answers normally.
    """

    status: int = 0
    body: dict[str, Any] | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    sleep: float = 0.0


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def fake_reply(messages: list[dict[str, Any]], max_tokens: int | None, stop: list[str]) -> tuple[str, str]:
    """The deterministic reply and its finish reason; tests can compute expectations with it."""
    last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    text = f"You said: {last_user}"
    for s in stop:  # like OpenAI: cut before the stop string, which is not included
        if s and s in text:
            text = text[: text.index(s)]
    words = text.split(" ")
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "stop"


class FakeOpenAIServer:
    """A threaded HTTP server on ``127.0.0.1`` and a free port; use it as a context manager.

    ``models`` are the served model names (others get a 404 like vLLM's); ``api_key``, when
    given, must arrive as ``Authorization: Bearer <key>`` or the server answers 401.
    """

    def __init__(
        self,
        models: set[str] | frozenset[str] = frozenset({"fake-model"}),
        api_key: str | None = None,
        chunk_delay_s: float = 0.0,
        newest: set[str] | frozenset[str] = frozenset(),
        lora_updating: bool = True,
    ) -> None:
        """``newest``: models that answer as OpenAI's newest do: ``max_tokens`` and any temperature
        but 1 are refused (400), the reply's length is ``max_completion_tokens``. ``lora_updating``:
        whether the runtime LoRA routes exist."""
        self.models = set(models) | set(newest)
        self.lora_updating = lora_updating
        self.loras: dict[str, str] = {}
        """LoRA adapters loaded at run time: served name → path."""
        self.newest = set(newest)
        self.api_key = api_key
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[ReceivedRequest] = []
        self.disconnects = 0
        """Responses the client hung up on before they were fully written."""
        self._canned: deque[Canned] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, *responses: Canned) -> None:
        """The next requests get these responses, in order, before normal replies resume."""
        with self._lock:
            self._canned.extend(responses)

    def fail_next(
        self, status: int, times: int = 1, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``times`` requests get an OpenAI-style error with ``status``."""
        hdrs = dict(FAST_RETRY_HEADERS if status == 429 or status >= 500 else {})
        hdrs.update(headers or {})
        body = _error_body(status, message or f"scripted error {status}")
        self.enqueue(*(Canned(status=status, body=body, headers=hdrs) for _ in range(times)))

    def sleep_next(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests wait ``seconds`` before answering normally."""
        self.enqueue(*(Canned(sleep=seconds) for _ in range(times)))

    def _next_canned(self) -> Canned | None:
        with self._lock:
            return self._canned.popleft() if self._canned else None

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def chat_requests(self) -> list[ReceivedRequest]:
        """The chat-completion requests received so far."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True  # a sleeping handler must not block shutdown
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    # HTTP/1.1 keeps connections alive like real servers, so tests exercise connection reuse
    # (for example after a client abandons a stream half-way).
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"_raw": raw.decode(errors="replace")}

    def _handle(self, method: str) -> None:
        body = self._read_body() if method == "POST" else None
        fake = self.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake._record(ReceivedRequest(method, self.path, headers, body))
        try:
            canned = fake._next_canned()
            if canned is not None:
                if canned.sleep and fake._stopping.wait(canned.sleep):
                    return
                if canned.status:
                    self._send(canned.status, canned.body if canned.body is not None else b"", canned.headers)
                    return
            if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                self._send(401, _error_body(401, "Incorrect API key provided."))
            elif method == "GET" and self.path.rstrip("/") == "/v1/models":
                models = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in sorted(fake.models)
                ]
                self._send(200, {"object": "list", "data": models})
            elif method == "POST" and self.path == "/v1/chat/completions":
                self._chat(body or {})
            elif method == "POST" and self.path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
                self._lora(self.path.rsplit("/", 1)[1], body or {})
            else:
                self._send(404, _error_body(404, f"no route {method} {self.path}"))
        except (BrokenPipeError, ConnectionResetError):
            # The client went away (timeout or stream closed early): drop this connection.
            self.close_connection = True
            with fake._lock:
                fake.disconnects += 1

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- runtime LoRA loading (vLLM) ---------------------------------------------------------

    def _lora(self, action: str, body: dict[str, Any]) -> None:
        fake = self.fake
        if not fake.lora_updating:
            self._send(404, {"detail": "Not Found"})
            return
        name, path = body.get("lora_name"), body.get("lora_path")
        with fake._lock:
            if action == "unload_lora_adapter":
                if name not in fake.loras:
                    self._send(404, _error_body(404, f"The lora adapter '{name}' cannot be found."))
                    return
                del fake.loras[name]
                fake.models.discard(name)
                self._send(200, f"Success: LoRA adapter '{name}' removed successfully.".encode())
                return
            if not name or not path:
                self._send(400, _error_body(400, "Both 'lora_name' and 'lora_path' must be provided."))
            elif name in fake.loras:
                self._send(400, _error_body(400, f"The lora adapter '{name}' has already been loaded."))
            elif not os.path.isfile(os.path.join(str(path), "adapter_config.json")):
                self._send(404, _error_body(404, f"Loading lora {name} failed: No adapter found for {path}"))
            else:
                fake.loras[name] = str(path)
                fake.models.add(name)
                self._send(200, f"Success: LoRA adapter '{name}' added successfully.".encode())

    # -- chat completions --------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model not in self.fake.models:
            self._send(404, _error_body(404, f"The model `{model}` does not exist."))
            return
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        if len(stop) > 4:  # the OpenAI API's limit, which vLLM-style servers may also enforce
            self._send(400, _error_body(400, "stop: at most 4 sequences"))
            return
        if model in self.fake.newest:
            if "max_tokens" in body:
                self._send(
                    400,
                    _error_body(
                        400,
                        "Unsupported parameter: 'max_tokens' is not supported with this model. "
                        "Use 'max_completion_tokens' instead.",
                    ),
                )
                return
            if body.get("temperature", 1) != 1:
                self._send(
                    400,
                    _error_body(400, "Unsupported value: 'temperature' does not support 0 with this model."),
                )
                return
        messages = body.get("messages") or []
        text, finish = fake_reply(messages, body.get("max_tokens", body.get("max_completion_tokens")), stop)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        created = int(time.time())
        if body.get("stream"):
            self._stream(model, text, finish, usage, created, body.get("stream_options") or {})
            return
        self._send(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            },
        )

    def _stream(
        self,
        model: str,
        text: str,
        finish: str,
        usage: dict[str, int],
        created: int,
        stream_options: dict[str, Any],
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            chunk = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
            if self.fake.chunk_delay_s:
                time.sleep(self.fake.chunk_delay_s)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        event(chunk({"role": "assistant", "content": ""}))  # real servers open with an empty delta
        words = text.split(" ")
        for i, word in enumerate(words):
            event(chunk({"content": word if i == 0 else " " + word}))
        event(chunk({}, finish))
        if stream_options.get("include_usage"):
            event(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

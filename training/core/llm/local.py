"""Local models run in-process with transformers: Hugging Face folders/ids and GGUF files.

Plain Python (no Django), so workers, management commands and tests can all use it.

GGUF files are de-quantized by transformers on load, which is slow (~35 s for a 135M model on
CPU). :func:`ensure_gguf_cache` does that once and keeps a safetensors copy under a cache folder
keyed by the file's absolute path, size and mtime, so later loads take a second or two.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from training.core.errors import first_line

from . import batching
from .base import (
    LLM,
    Conversation,
    FinishReason,
    Generation,
    GenerationError,
    GenerationParams,
    ModelLoadError,
    ModelSpec,
    validate_conversation,
    without_nul,
)
from .batching import find_stop, stop_seen

Progress = Callable[[str], None]

# Rows generated (or scored) together: enough to keep a CPU's matrix products busy, few enough that a
# handful of long replies do not hold the rest back (measured: docs/decisions.md).
MICRO_BATCH = 64
"""Conversations (or scoring requests) run through the model at once; bounds peak memory."""

FALLBACK_TEMPLATE_NOTE = """Used when neither the spec nor the tokenizer has a chat template:

    <|system|>\\n...\\n<|user|>\\n...\\n<|assistant|>\\n

Each message is ``<|role|>`` on its own line, then its content and a newline; the prompt ends with
``<|assistant|>\\n`` so the model continues as the assistant.
"""


def _noop(_: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# GGUF -> safetensors cache
# ---------------------------------------------------------------------------------------------


def gguf_cache_folder(gguf_path: Path, cache_dir: Path) -> Path:
    """Where the converted copy of ``gguf_path`` lives: ``<slug>-<hash>`` under ``cache_dir``.

    The hash covers the absolute path, size and mtime, so a replaced file gets a fresh copy.
    """
    gguf_path = Path(gguf_path).expanduser().resolve()
    stat = gguf_path.stat()
    key = f"{gguf_path}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", gguf_path.stem.lower()).strip("-") or "model"
    return Path(cache_dir).expanduser() / f"{slug}-{digest}"


def _cache_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _load_gguf_into_memory(gguf_path: Path, dtype: Any):
    """(tokenizer, model) de-quantized from a GGUF file, as plain dense weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    # dequantize=True: with the optional `kernels` package installed transformers would otherwise
    # keep the weights packed in GGUF blocks, which can't be saved as safetensors.
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    return tokenizer, model


def _make_serializable(model: Any) -> None:
    """Forget that the model came from GGUF so ``save_pretrained`` accepts it.

    transformers 5.x refuses to save a model loaded through its GGUF "quantizer" ("quantized with
    gguf and is not serializable") even when every weight was de-quantized into a plain tensor.
    """
    model.hf_quantizer = None
    if getattr(model, "is_quantized", False):
        with contextlib.suppress(AttributeError):
            model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        with contextlib.suppress(AttributeError):
            delattr(model.config, "quantization_config")


def ensure_gguf_cache(gguf_path: Path, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return a folder holding a safetensors copy of ``gguf_path``, converting it on first use.

    The copy is written to a temporary folder next to its final place and renamed into place, so
    a crash never leaves a half-written cache; when two processes convert at once, the first
    rename wins and the other copy is dropped. Raises :class:`FileNotFoundError` for a missing file.
    """
    import torch

    progress = progress or _noop
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise FileNotFoundError(f"no such GGUF file '{gguf_path}'")
    folder = gguf_cache_folder(gguf_path, cache_dir)
    if _cache_complete(folder):
        progress(f"Using cached copy of {gguf_path.name} at {folder}")
        return folder
    if folder.exists():  # left behind by something other than us (we only ever rename whole copies in)
        shutil.rmtree(folder, ignore_errors=True)

    folder.parent.mkdir(parents=True, exist_ok=True)
    progress(f"Converting {gguf_path.name} to safetensors (first load, ~30-60 s)…")
    # float32: the de-quantized values survive exactly; the loader casts to bfloat16 on GPU.
    tokenizer, model = _load_gguf_into_memory(gguf_path, torch.float32)
    _make_serializable(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _cache_complete(folder):  # not a lost race: a real failure
                raise
            progress(f"Another process cached {gguf_path.name} first; using {folder}")
            return folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    progress(f"Saved cache to {folder}")
    return folder


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _looks_like_path(source: str) -> bool:
    """A Hugging Face id is ``name`` or ``org/name``; anything else is meant as a local path."""
    return (
        source.startswith(("/", "./", "../", "~", "\\"))
        or source.count("/") > 1
        or bool(re.match(r"^[A-Za-z]:[\\/]", source))
        or source.endswith((".gguf", ".safetensors", ".bin"))
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _pick_device() -> tuple[Any, Any]:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def _held_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could be the start of a stop string."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if stop.startswith(text[-k:]):
                best = k
                break
    return best


def _cut_at_stops(pieces: Iterator[str], stops: Sequence[str]) -> Iterator[str]:
    """``pieces`` up to the first stop string; what might start one is held back until the next
    piece decides. Closes ``pieces`` when done (which ends its generation)."""
    stops = [s for s in stops if s]
    pending = ""
    try:
        for piece in pieces:
            if not stops:
                yield piece
                continue
            pending += piece
            cut = find_stop(pending, stops)
            if cut >= 0:
                if pending[:cut]:
                    yield pending[:cut]
                return
            keep = _held_suffix(pending, stops)
            ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            if ready:
                yield ready
        if pending:
            yield pending
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


def _make_stopping_classes():
    """StoppingCriteria subclasses, built lazily so importing this module stays cheap."""
    import torch
    from transformers import StoppingCriteria

    class StopOnText(StoppingCriteria):
        """Stop each row once its new text contains a stop string; remember at which length."""

        def __init__(self, tokenizer: Any, prompt_len: int, stops: Sequence[str]) -> None:
            self.tokenizer = tokenizer
            self.prompt_len = prompt_len
            self.stops = [s for s in stops if s]
            self.stopped_at: dict[int, int] = {}

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            if not self.stops:
                return done
            for row in range(input_ids.shape[0]):
                if row in self.stopped_at:
                    done[row] = True
                    continue
                if stop_seen(self.tokenizer, input_ids[row, self.prompt_len :], self.stops):
                    self.stopped_at[row] = input_ids.shape[1] - self.prompt_len
                    done[row] = True
            return done

    class StopOnEvent(StoppingCriteria):
        """Stop every row once ``event`` is set (the stream's consumer went away)."""

        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            return torch.full(
                (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    class GiveWay(StoppingCriteria):
        """Stop nothing; at every token, let the model's streams run first (:mod:`.batching`)."""

        def __init__(self, streams_first: Callable[[], None]) -> None:
            self.streams_first = streams_first

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            self.streams_first()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StopOnText, StopOnEvent, GiveWay


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class LocalLLM(LLM):
    """A transformers model in this process (``transformers`` or ``gguf`` backend).

    One re-entrant lock per instance serializes generation, scoring and adapter switches, so
    concurrent callers get the same results as sequential ones. LoRA adapters are layered on the
    one loaded base model with peft; ``adapter=None`` always means the untouched base model.
    """

    def __init__(
        self, spec: ModelSpec, *, cache_dir: Path | None = None, progress: Progress | None = None
    ) -> None:
        super().__init__(spec)
        self._lock = batching.ModelLock()
        self._progress = progress or _noop
        self._adapters: list[str] = []
        self.adapters_version = 0  # counts adapter loads: a computed prompt prefix is only reused within one
        self._adapters_off = False  # inside _adapter_context(None) with adapters loaded
        self._batcher: batching.StreamBatcher | None = None  # set by _prepare where the model allows
        self.device, self.dtype = _pick_device()
        if spec.backend == "transformers":
            tokenizer, model = self._load_transformers(spec.source)
        elif spec.backend == "gguf":
            tokenizer, model = self._load_gguf(Path(spec.source), cache_dir)
        else:
            raise ModelLoadError(
                spec.name, f"LocalLLM runs transformers and gguf models, not {spec.backend!r}"
            )
        self.tokenizer = tokenizer
        self.model = model
        self._prepare()

    # -- loading ------------------------------------------------------------------------------

    def _load_folder(self, source: str, *, local_only: bool = False) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"local_files_only": True} if local_only else {}
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=self.dtype, **kwargs)
        return tokenizer, model

    def _load_transformers(self, source: str) -> tuple[Any, Any]:
        path = Path(source).expanduser()
        if _looks_like_path(source) and not path.exists():
            raise ModelLoadError(self.name, f"no such folder '{source}'")
        if path.is_file():
            hint = (
                "use the gguf backend for .gguf files"
                if path.suffix == ".gguf"
                else "expected a model folder"
            )
            raise ModelLoadError(self.name, f"'{source}' is a file ({hint})")
        if path.is_dir() and not (path / "config.json").is_file():
            raise ModelLoadError(self.name, f"folder '{source}' holds no model (no config.json)")
        self._progress(f"Loading {source}…")
        try:
            loaded = self._load_folder(str(path) if path.exists() else source)
        except Exception as exc:  # transformers raises OSError/ValueError/HF errors; all mean "can't load"
            if path.exists():
                cause = f"could not load the model in folder '{source}': {first_line(exc)}"
            elif _offline():
                cause = (
                    f"no such folder or Hugging Face id '{source}' in the local cache "
                    f"(offline? set HF_HUB_OFFLINE=0 and check the name)"
                )
            else:
                cause = f"no such folder or Hugging Face id '{source}' ({first_line(exc)})"
            raise ModelLoadError(self.name, cause) from exc
        self._progress(f"Loaded {source}")
        return loaded

    def _load_gguf(self, gguf_path: Path, cache_dir: Path | None) -> tuple[Any, Any]:
        gguf_path = gguf_path.expanduser()
        if not gguf_path.is_file():
            raise ModelLoadError(self.name, f"no such GGUF file '{gguf_path}'")
        if cache_dir is None:
            self._progress(f"Loading {gguf_path.name} (de-quantizing, ~30-60 s; no cache folder set)…")
            try:
                tokenizer, model = _load_gguf_into_memory(gguf_path, self.dtype)
            except Exception as exc:
                raise ModelLoadError(
                    self.name, f"could not read GGUF file '{gguf_path}': {first_line(exc)}"
                ) from exc
            _make_serializable(model)  # so adapters/trainers that save it don't trip on the flag
            return tokenizer, model
        try:
            folder = ensure_gguf_cache(gguf_path, cache_dir, self._progress)
        except Exception as exc:
            raise ModelLoadError(
                self.name, f"could not convert GGUF file '{gguf_path}' into '{cache_dir}': {first_line(exc)}"
            ) from exc
        try:
            loaded = self._load_folder(str(folder), local_only=True)
        except Exception as exc:
            raise ModelLoadError(
                self.name,
                f"the cached copy in '{folder}' is unreadable (delete it to rebuild): {first_line(exc)}",
            ) from exc
        self._progress(f"Loaded from cache {folder}")
        return loaded

    def _prepare(self) -> None:
        """Device, eval mode, padding and end-of-turn ids: everything generation relies on."""
        tokenizer = self.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
        self.model.to(self.device)
        self.model.eval()
        eos: list[int] = []
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (configured if isinstance(configured, list) else [configured]) + [
            tokenizer.eos_token_id
        ]:
            if value is not None and value not in eos:
                eos.append(int(value))
        self._eos_ids = eos
        self._pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
        )
        self._template = self.spec.chat_template or getattr(tokenizer, "chat_template", None) or ""
        self._stop_on_text, self._stop_on_event, self._give_way = _make_stopping_classes()
        self._batcher = batching.StreamBatcher(self) if batching.can_batch(self.model) else None

    # -- common pieces ------------------------------------------------------------------------

    @property
    def adapters(self) -> list[str]:
        """Names of the LoRA adapters loaded so far."""
        return list(self._adapters)

    def _require_model(self) -> Any:
        if self.model is None:
            raise GenerationError(self.name, "the model was closed")
        return self.model

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self._adapters:
            loaded = ", ".join(self._adapters) or "none"
            raise GenerationError(self.name, f"unknown adapter {adapter!r} (loaded: {loaded})")

    @contextlib.contextmanager
    def _adapter_context(self, adapter: str | None) -> Iterator[None]:
        """Run with the named adapter active, or with all adapters off for ``None``. Hold the lock."""
        self._check_adapter(adapter)
        model = self._require_model()
        if adapter is not None:
            model.set_adapter(adapter)
            yield
        elif self._adapters:
            with model.disable_adapter():
                self._adapters_off = True
                try:
                    yield
                finally:
                    self._adapters_off = False
        else:
            yield

    def render_prompt(self, conversation: Conversation) -> str:
        """The prompt text for ``conversation``, ending where the assistant's reply starts.

        Uses the spec's chat template, else the tokenizer's, else the plain format described in
        :data:`FALLBACK_TEMPLATE_NOTE`.
        """
        if self._template:
            return self.tokenizer.apply_chat_template(
                conversation, chat_template=self._template, add_generation_prompt=True, tokenize=False
            )
        parts = [f"<|{m['role']}|>\n{m['content']}\n" for m in conversation]
        return "".join(parts) + "<|assistant|>\n"

    def _encode_prompt(self, conversation: Conversation) -> list[int]:
        # The template writes any BOS itself; adding special tokens here would double it.
        return list(self.tokenizer(self.render_prompt(conversation), add_special_tokens=False)["input_ids"])

    def _left_pad(self, rows: Sequence[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _generate_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": self._pad_id,
            "eos_token_id": self._eos_ids or None,
        }
        if params.greedy:
            # Clear the model's own sampling defaults so transformers doesn't warn they are ignored.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # top_k=0 turns off a top-k the model's generation_config may carry: params say it all.
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        return kwargs

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed torch for this call only; the global RNG state is restored afterwards."""
        import torch

        if seed is None:
            yield
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # -- generate -----------------------------------------------------------------------------

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> list[Generation]:
        """Complete each conversation; results come back in input order.

        Greedy: :data:`MICRO_BATCH` rows at a time, continuously refilled (a finished row's place
        goes to the next prompt, :func:`.batching.generate_greedy`), shortest prompts first. Sampling:
        micro-batches of :data:`MICRO_BATCH` through transformers' ``generate``. Greedy results do not
        depend on what else is in the batch (left padding + attention mask). Streams of the same model
        run first, between any two tokens (:mod:`.batching`).
        """
        import torch

        params = self._params(params)
        conversations = list(conversations)
        for conversation in conversations:
            validate_conversation(self.name, conversation)
        if not conversations:
            return []
        with self._lock:
            self._require_model()
            self._check_adapter(adapter)
            prompts = [self._encode_prompt(c) for c in conversations]
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            results: list[Generation | None] = [None] * len(prompts)
            try:
                with self._adapter_context(adapter), self._seeded(params.seed), torch.inference_mode():
                    if params.greedy and self._batcher is not None:
                        finished = batching.generate_greedy(
                            self,
                            self.model,
                            [prompts[i] for i in order],
                            params,
                            rows=MICRO_BATCH,
                            between_steps=self._streams_first,
                        )
                        for i, done in zip(order, finished, strict=True):
                            stopped_at = len(done.tokens) if done.stopped else None
                            results[i] = self._generation(prompts[i], done.tokens, stopped_at, params)
                    else:
                        for start in range(0, len(order), MICRO_BATCH):
                            chunk = order[start : start + MICRO_BATCH]
                            for i, generation in zip(
                                chunk, self._generate_batch([prompts[i] for i in chunk], params), strict=True
                            ):
                                results[i] = generation
            except GenerationError:
                raise
            except Exception as exc:  # e.g. CUDA out of memory, prompt longer than the model's context
                raise GenerationError(self.name, f"generation failed: {first_line(exc)}") from exc
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], params: GenerationParams) -> list[Generation]:
        from transformers import StoppingCriteriaList

        input_ids, attention_mask = self._left_pad(prompts)
        width = input_ids.shape[1]
        stop_on_text = self._stop_on_text(self.tokenizer, width, params.stop)
        criteria = [stop_on_text]
        if self._batcher is not None:
            criteria.append(self._give_way(self._streams_first))
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            stopping_criteria=StoppingCriteriaList(criteria),
            **self._generate_kwargs(params),
        )
        return [
            self._generation(prompt, output[row, width:].tolist(), stop_on_text.stopped_at.get(row), params)
            for row, prompt in enumerate(prompts)
        ]

    def _streams_first(self) -> None:
        if self._batcher is not None:
            self._batcher.give_way()  # returns at once when no stream is waiting or running

    def _generation(
        self, prompt: list[int], new: list[int], stopped_at: int | None, params: GenerationParams
    ) -> Generation:
        """The reply in ``new`` (a row's new tokens, maybe followed by padding): up to the end-of-turn
        token (counted as generated) or where a stop string was seen, cut at the stop string."""
        eos = set(self._eos_ids)
        end, hit_eos = len(new), False
        for pos, token in enumerate(new):
            if token in eos:
                end, hit_eos = pos + 1, True
                break
        if stopped_at is not None:
            end = min(end, stopped_at)  # the rest is padding
        text = self.tokenizer.decode(new[:end], skip_special_tokens=True)
        cut = find_stop(text, params.stop)
        reason: FinishReason
        if cut >= 0:
            text, reason = text[:cut], "stop"
        elif hit_eos:
            reason = "stop"
        else:
            reason = "length"
        return Generation(text=text, prompt_tokens=len(prompt), completion_tokens=end, finish_reason=reason)

    # -- stream -------------------------------------------------------------------------------

    def stream(
        self,
        conversation: Conversation,
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> Iterator[str]:
        """Yield the reply piece by piece; text from a stop string on is never yielded.

        Bad input raises here, before iteration. Concurrent streams are one continuously batched
        generation (:mod:`.batching`), served before this model's ``generate`` and scoring calls;
        closing the iterator early ends the stream within one token. A model whose cache cannot be
        batched streams one at a time under the lock instead.
        """
        params = self._params(params)
        validate_conversation(self.name, conversation)
        # No model lock here: a stream must not wait for a long generate call to start.
        self._require_model()
        self._check_adapter(adapter)
        batcher = self._batcher
        if batcher is None:
            return _cut_at_stops(self._stream_alone(conversation, params, adapter), params.stop)
        return _cut_at_stops(batcher.submit(self._encode_prompt(conversation), params, adapter), params.stop)

    def _stream_alone(
        self, conversation: Conversation, params: GenerationParams, adapter: str | None
    ) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        cancel = threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock:
                    prompt = self._encode_prompt(conversation)
                    input_ids, attention_mask = self._left_pad([prompt])
                    with self._adapter_context(adapter), self._seeded(params.seed), torch.inference_mode():
                        self.model.generate(
                            input_ids=input_ids,
                            attention_mask=attention_mask,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([self._stop_on_event(cancel)]),
                            **self._generate_kwargs(params),
                        )
            except BaseException as exc:  # handed to the consumer; a thread must not die silently
                failure.append(exc)
                streamer.on_finalized_text("", stream_end=True)  # unblock the consumer

        thread = threading.Thread(target=run, name=f"stream-{self.name}", daemon=True)
        thread.start()
        try:
            for raw in streamer:
                piece = without_nul(raw)
                if piece:
                    yield piece
        finally:
            cancel.set()
            thread.join()
        if failure:
            exc = failure[0]
            if isinstance(exc, GenerationError):
                raise exc
            raise GenerationError(self.name, f"generation failed: {first_line(exc)}") from exc

    # -- loglikelihood ------------------------------------------------------------------------

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], *, adapter: str | None = None
    ) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens given its prompt.

        Prompt and continuation are tokenized separately and concatenated, so the continuation's
        tokens are exactly those scored (a joint tokenization could merge across the boundary).
        An empty continuation scores 0.0. Over-long inputs lose tokens from the prompt's start.
        """
        return self._score(list(requests), adapter, chat=False)

    def reply_loglikelihood(
        self, requests: Sequence[tuple[Conversation, str]], *, adapter: str | None = None
    ) -> list[float]:
        """Sum of log-probabilities of each reply given its conversation, scored where the assistant's
        turn starts (the prompt :meth:`render_prompt` makes, as generation sees it)."""
        return self._score(list(requests), adapter, chat=True)

    def _score(self, requests: list[tuple[Any, str]], adapter: str | None, *, chat: bool) -> list[float]:
        """Scores (prompt, continuation) pairs; a prompt is a conversation when ``chat``, else raw text."""
        import torch

        if not requests:
            return []
        with self._lock:
            model = self._require_model()
            self._check_adapter(adapter)
            limit = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
            encoded: list[tuple[list[int], int]] = []
            for prompt, continuation in requests:
                # A raw prompt gets the tokenizer's default special tokens (BOS); a chat prompt's
                # template writes its own.
                p_ids = self._encode_prompt(prompt) if chat else list(self.tokenizer(prompt)["input_ids"])
                c_ids = list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
                if not p_ids:  # the first continuation token needs something to be conditioned on
                    p_ids = [
                        self.tokenizer.bos_token_id
                        if self.tokenizer.bos_token_id is not None
                        else self._eos_ids[0]
                    ]
                ids = p_ids + c_ids
                if limit and len(ids) > limit:
                    ids = ids[len(ids) - limit :]
                encoded.append((ids, min(len(c_ids), len(ids) - 1)))
            scores = [0.0] * len(requests)
            order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
            try:
                with self._adapter_context(adapter), torch.inference_mode():
                    for start in range(0, len(order), MICRO_BATCH):
                        self._streams_first()
                        chunk = order[start : start + MICRO_BATCH]
                        for i, score in zip(
                            chunk, self._score_batch([encoded[i] for i in chunk]), strict=True
                        ):
                            scores[i] = score
            except GenerationError:
                raise
            except Exception as exc:
                raise GenerationError(self.name, f"scoring failed: {first_line(exc)}") from exc
        return scores

    def _score_batch(self, batch: list[tuple[list[int], int]]) -> list[float]:
        import torch

        # Right padding here: positions then start at 0 for every row without extra bookkeeping.
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
        out = []
        for row, (ids, n_cont) in enumerate(batch):
            if n_cont <= 0:
                out.append(0.0)
                continue
            # Logits at position t predict token t+1.
            predicting = logits[row, len(ids) - n_cont - 1 : len(ids) - 1].float().log_softmax(-1)
            targets = torch.tensor(ids[len(ids) - n_cont :], device=predicting.device)
            out.append(float(predicting.gather(1, targets[:, None]).sum()))
        return out

    # -- adapters -----------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str) -> None:
        """Load the LoRA adapter saved in folder ``path`` under ``name`` (replacing one of that name).

        The base weights are never changed; switching adapters does not reload anything.
        """
        folder = Path(path).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise ModelLoadError(self.name, f"no LoRA adapter in '{path}' (expected adapter_config.json)")
        if not name:
            raise ModelLoadError(self.name, "an adapter needs a name")
        with self._lock:
            model = self._require_model()
            try:
                from peft import PeftModel

                if not isinstance(model, PeftModel):
                    self.model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
                else:
                    if name in self._adapters:
                        model.delete_adapter(name)
                        self._adapters.remove(name)
                    model.load_adapter(str(folder), adapter_name=name)
            except Exception as exc:
                raise ModelLoadError(
                    self.name, f"could not load adapter {name!r} from '{path}': {first_line(exc)}"
                ) from exc
            self.model.eval()
            self._adapters.append(name)
            self.adapters_version += 1
            self._progress(f"Loaded adapter {name!r} from {path}")

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the model and tokenizer and free GPU memory; running streams end with an error.
        Safe to call twice."""
        with self._lock:
            if getattr(self, "model", None) is None:
                return
            if self._batcher is not None:
                self._batcher.close()
                self._batcher = None
            self.model = None
            self._adapters = []
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

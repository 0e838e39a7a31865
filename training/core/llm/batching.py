"""Continuous batching on one local model: streamed replies, and greedy ``generate``.

Plain Python (torch and transformers, no Django). :class:`StreamBatcher` serves every
:meth:`LocalLLM.stream <training.core.llm.local.LocalLLM.stream>` of one loaded model as a row of
one running batch; :func:`generate_greedy` answers a list of prompts with a batch that refills
itself (a finished row's place goes to the next prompt). Rules:

- **Join and leave at any token.** A new stream is prefilled and joins the running batch at the
  next step; a stream that ends (end of turn, ``max_new_tokens``, its reader went away) leaves at
  once. Nobody waits for someone else's reply to finish.
- **One step at a time, under the model's lock.** A step is one forward pass: the prefill of the
  streams that arrived, then one new token for every row. Between steps the lock is free, and the
  streams' thread takes it again only once nobody else is queued for it (:class:`ModelLock`):
  closing the model or loading an adapter waits for one step, not for every running reply.
- **Streams come before background work.** A long ``generate`` or scoring call of the same model
  (a teaching run's micro-batch of 64 rows) calls :meth:`StreamBatcher.give_way` at every token: it
  runs the streams' steps itself until no stream is left, then goes on where it stopped. A learner's
  first token waits for one step of that work, not for the whole call; and that step is short: the
  call prefills its prompts :data:`PREFILL_TOKENS` at a time.
- **Rows may use different adapters** (peft's mixed-batch forward, ``adapter_names``); ``None`` is
  the untouched base model, as everywhere in :mod:`.local`.
- **Greedy rows give what ``generate`` gives** for the same conversation: left padding with an
  attention mask and explicit positions, as ``generate`` batches. Sampling rows draw from their
  own seeded generator, so they never move the global random state a seeded ``generate`` relies on.

Models whose cache is not one plain tensor per layer (sliding-window layers) are not batched:
:func:`can_batch` says so and :mod:`.local` streams them one at a time as before.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from training.core.errors import first_line

from .base import GenerationError, GenerationParams, without_nul

MAX_ROWS = 32
"""Streams generated together; more wait (in arrival order) until a row leaves."""

PREFILL_TOKENS = 1024
"""Prompt tokens :func:`generate_greedy` prefills in one step, at most (a longer prompt goes alone).
A teaching run's micro-batch of 64 prompts prefilled at once was one step of several seconds on 2
cores, and a learner's stream waited for it (docs/benchmarks/load.md, "Learners while a teaching
run works"); in groups, the streams go first between two of them."""

MIN_SHARED_PREFIX = 16
"""Prompts prefilled together that begin with at least this many identical tokens (and use the same
adapter) compute those tokens once: twenty learners of one course share the tutor's long prompt."""

_END = object()


class ModelLock:
    """The model's re-entrant lock, fair to callers against the streams' thread.

    Python's locks are not fair: a thread that releases and re-takes a lock in a loop (the streams'
    thread, once a step) can keep a thread queued for it waiting until the loop ends. Callers take
    this lock with ``with``, which counts them as queued until they hold it; the streams' thread
    takes it with :meth:`after_others`, which first waits until no caller is queued.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._queue = threading.Condition()
        self._queued = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._queue:
            self._queued += 1
        try:
            return self._lock.acquire(blocking, timeout)
        finally:
            with self._queue:
                self._queued -= 1
                if not self._queued:
                    self._queue.notify_all()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextlib.contextmanager
    def after_others(self) -> Iterator[None]:
        """Hold the lock, taken once no caller of ``with`` is queued for it."""
        with self._queue:
            self._queue.wait_for(lambda: not self._queued)
        with self._lock:
            yield


def can_batch(model: Any) -> bool:
    """Whether this model's cache is one growing key/value tensor per layer (no sliding windows)."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layer_types = getattr(text, "layer_types", None)
    if layer_types:
        return all(kind == "full_attention" for kind in layer_types)
    if getattr(text, "use_sliding_window", None) is False:
        return True
    return not getattr(text, "sliding_window", None)


@dataclass(eq=False)
class _Row:
    """One sequence in a batch: its prompt, adapter, the tokens made so far and its next position."""

    prompt: list[int]
    adapter: str | None
    tokens: list[int] = field(default_factory=list)
    position: int = 0  # position id of the token this row feeds next


@dataclass(eq=False)
class _StreamRow(_Row):
    params: GenerationParams = field(default_factory=GenerationParams)
    generator: Any = None  # torch.Generator for sampling rows, None for greedy
    out: queue.Queue = field(default_factory=queue.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    shown: int = 0  # characters of the decoded reply already handed out


class _Batch:
    """The tensors of a running batch: one left-padded key/value cache, its attention mask and the
    token each row feeds next. Rows join after their own prefill and leave whenever they are done.

    ``by_name``: pass each row's adapter to the model (peft's mixed batch); otherwise the caller has
    set the one adapter every row uses."""

    def __init__(self, owner: Any, *, by_name: bool) -> None:
        self.owner = owner
        self.by_name = by_name
        self.rows: list[_Row] = []
        self.next: list[int] = []
        self._cache: Any = None
        self._mask: Any = None  # [rows, cache length]: 1 for real tokens, 0 for left padding
        self._kept: _KeptPrefix | None = None  # the last prefix computed (see prefill)

    def prefill(self, model: Any, new: Sequence[_Row]) -> Any:
        """Run the prompts of ``new``, append them to the batch; the logits of their next tokens.

        A prefix that every prompt of ``new`` starts with (:data:`MIN_SHARED_PREFIX` tokens or more,
        one adapter for all) is computed once and copied to each row; the rest of each prompt
        follows it, left-padded, so the padding sits between the prefix and the rest (masked out).

        A batch whose rows name their adapters (the streams' batch) also keeps the last prefix it
        computed (a lone prompt whole, or a group's shared start), with the adapter and the owner's
        adapter version it was computed under: a later prompt that starts with
        :data:`MIN_SHARED_PREFIX` or more of its tokens, under the same adapter, reuses them instead of
        computing them again (learners of one course share the tutor's long instructions, so a
        learner's first token waits for their own few tokens, not the whole prompt).
        """
        import torch
        from transformers import DynamicCache

        prompts = [row.prompt for row in new]
        one_adapter = len({row.adapter for row in new}) == 1
        shared = shared_prefix(prompts) if one_adapter else 0
        if len(new) < 2 or shared < MIN_SHARED_PREFIX:
            shared = 0
        cache: Any = DynamicCache()  # its layers are plain DynamicLayers here (can_batch)
        device = self.owner.device
        reused = self._kept.reusable(new, self._adapters_version()) if self._kept and one_adapter else 0
        if reused >= MIN_SHARED_PREFIX:
            for index, (keys, values) in enumerate(self._kept.layers):  # type: ignore[union-attr]
                cache.update(keys[:, :, :reused], values[:, :, :reused], index)
            shared = max(shared, reused)
        else:
            reused = 0
        if shared > reused:
            model(
                input_ids=torch.tensor([prompts[0][reused:shared]], dtype=torch.long, device=device),
                attention_mask=torch.ones((1, shared), dtype=torch.long, device=device),
                position_ids=torch.arange(reused, shared, device=device).view(1, shared - reused),
                past_key_values=cache,
                cache_position=torch.arange(reused, shared, device=device),
                use_cache=True,
                logits_to_keep=1,
                **self._adapter_kwargs(new[:1]),
            )
        if shared and len(new) > 1:
            if shared > reused:  # something new was computed (else the kept prefix already holds it)
                self._keep_prefix(new[0], shared, cache)
            for layer in cache.layers:
                layer.keys = layer.keys.expand(len(new), -1, -1, -1)
                layer.values = layer.values.expand(len(new), -1, -1, -1)
        input_ids, rest_mask = self.owner._left_pad([prompt[shared:] for prompt in prompts])
        width = input_ids.shape[1]
        mask = torch.cat([torch.ones((len(new), shared), dtype=torch.long, device=device), rest_mask], 1)
        output = model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=shared + (rest_mask.cumsum(-1) - 1).clamp(min=0),
            past_key_values=cache,
            cache_position=torch.arange(shared, shared + width, device=device),
            use_cache=True,
            logits_to_keep=1,
            **self._adapter_kwargs(new),
        )
        for row in new:
            row.position = len(row.prompt)
        if len(new) == 1:  # one row, no padding: its cache is its whole prompt
            self._keep_prefix(new[0], len(prompts[0]), cache)
        self._join(new, cache, mask)
        return output.logits[:, -1, :]

    def _adapters_version(self) -> int:
        return int(getattr(self.owner, "adapters_version", 0))

    def _keep_prefix(self, row: _Row, length: int, cache: Any) -> None:
        """Keep the first ``length`` tokens of ``row``'s prompt and their cache (one row of it)."""
        if not self.by_name:
            return  # a batch for one call: nothing comes after it
        self._kept = _KeptPrefix(
            adapter=row.adapter,
            version=self._adapters_version(),
            tokens=list(row.prompt[:length]),
            layers=[
                (layer.keys[:1, :, :length].clone(), layer.values[:1, :, :length].clone())
                for layer in cache.layers
            ],
        )

    def decode(self, model: Any) -> Any:
        """Feed every row its next token; the logits of the token after it."""
        import torch

        device = self._mask.device
        rows = len(self.rows)
        width = self._mask.shape[1]
        self._mask = torch.cat([self._mask, torch.ones((rows, 1), dtype=torch.long, device=device)], 1)
        output = model(
            input_ids=torch.tensor(self.next, dtype=torch.long, device=device).view(rows, 1),
            attention_mask=self._mask,
            position_ids=torch.tensor([row.position for row in self.rows], device=device).view(rows, 1),
            past_key_values=self._cache,
            cache_position=torch.tensor([width], dtype=torch.long, device=device),
            use_cache=True,
            **self._adapter_kwargs(self.rows),
        )
        for row in self.rows:
            row.position += 1
        return output.logits[:, -1, :]

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at these indexes (in this order)."""
        import torch

        if len(keep) == len(self.rows):
            return
        if not keep:
            self.reset()
            return
        index = torch.tensor(keep, dtype=torch.long, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        # Columns that are padding for every row left are dropped with the rows that needed them.
        start = int(mask.any(0).nonzero()[0].item())
        self._mask = mask[:, start:]
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:, :]
            layer.values = layer.values.index_select(0, index)[:, :, start:, :]
        self.rows = [self.rows[i] for i in keep]
        self.next = [self.next[i] for i in keep]

    def reset(self) -> None:
        self.rows, self.next, self._cache, self._mask = [], [], None, None

    def _adapter_kwargs(self, rows: Sequence[_Row]) -> dict[str, Any]:
        if not self.by_name or not self.owner._adapters:
            return {}
        return {"adapter_names": [row.adapter or "__base__" for row in rows]}

    def _join(self, new: Sequence[_Row], cache: Any, mask: Any) -> None:
        import torch

        if not self.rows:
            self.rows, self._cache, self._mask, self.next = list(new), cache, mask, [0] * len(new)
            return
        width = max(self._mask.shape[1], mask.shape[1])
        for old, added in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(added.keys, width)], 0)
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(added.values, width)], 0)
        self._mask = torch.cat([_pad_left(self._mask, width), _pad_left(mask, width)], 0)
        self.rows.extend(new)
        self.next.extend([0] * len(new))


@contextlib.contextmanager
def _adapter_layers_on(owner: Any) -> Iterator[Any]:
    """The model with every adapter layer enabled (rows pick theirs by name); a caller's
    "adapters off" is put back afterwards."""
    model = owner._require_model()
    off = bool(owner._adapters) and getattr(owner, "_adapters_off", False)
    if off:
        model.base_model.enable_adapter_layers()
    try:
        yield model
    finally:
        if off:
            model.base_model.disable_adapter_layers()


class StreamBatcher:
    """Serve many streams of one model as one continuously batched generation.

    ``owner`` is the :class:`~training.core.llm.local.LocalLLM` whose model, tokenizer, lock and
    adapters are used (a stream whose adapter was unloaded before it started ends with its
    :class:`GenerationError`). A daemon thread runs steps while streams are waiting or running and
    sleeps otherwise.
    """

    def __init__(self, owner: Any, *, max_rows: int = MAX_ROWS) -> None:
        self.owner = owner
        self.max_rows = max_rows
        self._waiting: list[_StreamRow] = []  # guarded by _wake's lock; never needs the model's lock
        self._wake = threading.Condition()
        self._batch = _Batch(owner, by_name=True)  # guarded by the model's lock
        self._admitting: list[_StreamRow] = []  # being prefilled, not yet in the batch
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the public side ------------------------------------------------------------------------

    def submit(self, prompt: list[int], params: GenerationParams, adapter: str | None) -> Iterator[str]:
        """Queue one stream; iterate the result for its text. Closing the iterator ends the stream."""
        import torch

        generator = None
        if not params.greedy:
            generator = torch.Generator(device=self.owner.device)
            if params.seed is not None:
                generator.manual_seed(params.seed)
            else:
                generator.seed()
        row = _StreamRow(prompt=prompt, adapter=adapter, params=params, generator=generator)
        with self._wake:
            if self._closed:
                raise GenerationError(self.owner.name, "the model was closed")
            self._waiting.append(row)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name=f"streams-{self.owner.name}", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        return self._read(row)

    def busy(self) -> bool:
        """Whether any stream is running or waiting to join."""
        return bool(self._batch.rows or self._waiting)

    def give_way(self) -> None:
        """Run stream steps until no stream is left. Call it holding the model's lock (a long
        ``generate`` does, at every token); the model's adapter state is restored afterwards."""
        while self.busy():
            self.step()

    def close(self) -> None:
        """End every stream with an error and stop the thread. Call it holding the model's lock."""
        with self._wake:
            self._closed = True
            waiting, self._waiting = self._waiting, []
            self._wake.notify_all()
        self._fail(self._rows() + waiting, GenerationError(self.owner.name, "the model was closed"))
        self._batch.reset()
        self._batch._kept = None

    # -- reading one stream ---------------------------------------------------------------------

    def _read(self, row: _StreamRow) -> Iterator[str]:
        try:
            while True:
                item = row.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            row.cancel.set()  # the reader is gone: the row leaves at the next step

    # -- the serving thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._batch.rows:
                    self._wake.wait()
                if self._closed:
                    return
            with self.owner._lock.after_others():
                if not self._closed:
                    self.step()

    # -- one step (hold the model's lock) -------------------------------------------------------

    def step(self) -> None:
        """Admit waiting streams (prefill), then one new token for every row."""
        import torch

        try:
            with _adapter_layers_on(self.owner) as model, torch.inference_mode():
                self._drop_finished()
                self._admit(model)
                if self._batch.rows:
                    logits = self._batch.decode(model)
                    for i, row in enumerate(self._rows()):
                        self._take(i, row, logits[i])
                self._drop_finished()
        except Exception as exc:  # out of memory, a broken adapter: every stream in the batch ends
            error = GenerationError(self.owner.name, f"generation failed: {first_line(exc)}")
            self._fail(self._rows() + self._admitting, error)
            self._batch.reset()
            self._admitting = []

    def _rows(self) -> list[_StreamRow]:
        return self._batch.rows  # type: ignore[return-value]  # only stream rows join this batch

    def _admit(self, model: Any) -> None:
        with self._wake:
            room = max(0, self.max_rows - len(self._batch.rows))
            new, self._waiting = self._waiting[:room], self._waiting[room:]
        new = [row for row in new if not self._ended_before_start(row) and self._adapter_known(row)]
        if not new:
            return
        self._admitting = new
        groups: dict[str | None, list[_StreamRow]] = {}
        for row in new:  # one prefill per adapter: a shared prefix is only shared under one adapter
            groups.setdefault(row.adapter, []).append(row)
        for group in groups.values():
            logits = self._batch.prefill(model, group)
            offset = len(self._batch.rows) - len(group)
            for i, row in enumerate(group):
                self._take(offset + i, row, logits[i])
        self._admitting = []

    def _take(self, index: int, row: _StreamRow, logits: Any) -> None:
        """Choose row's next token, hand out the text it completes, and note whether it is done."""
        token = _choose(row, logits)
        self._batch.next[index] = token
        row.tokens.append(token)
        if token in self.owner._eos_ids:
            self._finish(row)
            return
        text = without_nul(self.owner.tokenizer.decode(row.tokens, skip_special_tokens=True))
        # A character split over several tokens decodes as U+FFFD until its last byte arrives.
        ready = text.rstrip("\ufffd")
        if len(ready) > row.shown:
            row.out.put(ready[row.shown :])
            row.shown = len(ready)
        if len(row.tokens) >= row.params.max_new_tokens:
            if len(text) > row.shown:
                row.out.put(text[row.shown :])
            self._finish(row)

    # -- rows coming and going ------------------------------------------------------------------

    def _ended_before_start(self, row: _StreamRow) -> bool:
        if row.cancel.is_set():
            row.out.put(_END)
            return True
        return False

    def _adapter_known(self, row: _StreamRow) -> bool:
        try:
            self.owner._check_adapter(row.adapter)
        except GenerationError as exc:  # unloaded since the stream was asked for
            self._fail([row], exc)
            return False
        return True

    def _finish(self, row: _StreamRow) -> None:
        if not row.cancel.is_set():
            row.out.put(_END)
        row.cancel.set()

    def _drop_finished(self) -> None:
        rows = self._rows()
        if any(row.cancel.is_set() for row in rows):
            self._batch.keep([i for i, row in enumerate(rows) if not row.cancel.is_set()])

    @staticmethod
    def _fail(rows: list[_StreamRow], error: BaseException) -> None:
        for row in rows:
            if not row.cancel.is_set():
                row.out.put(error)
            row.cancel.set()


def _choose(row: _StreamRow, logits: Any) -> int:
    import torch

    if row.generator is None:
        return int(torch.argmax(logits).item())
    scores = logits.float() / row.params.temperature
    probs = torch.softmax(scores, dim=-1)
    if row.params.top_p < 1.0:
        ordered, index = torch.sort(probs, descending=True)
        # Keep the smallest set whose mass reaches top_p (the most likely token always stays).
        drop = ordered.cumsum(-1) - ordered > row.params.top_p
        ordered[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, index, ordered)
    return int(torch.multinomial(probs, 1, generator=row.generator).item())


@dataclass(frozen=True)
class Finished:
    """A greedy row's new tokens (the end-of-turn token included when it came) and whether a stop
    string ended it (its text is still in the tokens)."""

    tokens: list[int]
    stopped: bool


@dataclass(eq=False)
class _AnswerRow(_Row):
    index: int = 0  # of its prompt in generate_greedy's list


def stop_seen(tokenizer: Any, new_tokens: Any, stops: Sequence[str]) -> bool:
    """Whether the end of a row's new tokens spells one of ``stops`` (non-empty strings). A stop of
    n characters spans at most n tokens; a few more cover a character split over several tokens."""
    window = max(len(s) for s in stops) + 8
    return find_stop(tokenizer.decode(new_tokens[-window:], skip_special_tokens=True), stops) >= 0


def generate_greedy(
    owner: Any,
    model: Any,
    prompts: list[list[int]],
    params: GenerationParams,
    *,
    rows: int,
    between_steps: Callable[[], None] = lambda: None,
) -> list[Finished]:
    """Greedy replies to ``prompts``, at most ``rows`` at a time; a finished row's place goes to the
    next prompt (in the order given), so no row waits for the longest reply of a micro-batch.

    Every row uses whichever adapter the caller has set. ``between_steps`` runs after each step (the
    caller lets its streams go first there). Call it holding the model's lock, in inference mode.
    """
    import torch

    batch = _Batch(owner, by_name=False)
    results: list[Finished | None] = [None] * len(prompts)
    stops = [s for s in params.stop if s]
    eos = set(owner._eos_ids)
    waiting = list(range(len(prompts)))
    waiting.reverse()  # pop() takes them in the order given
    refill = max(1, rows // 4)  # prefill joiners in groups: one at a time would cost a step each
    cut = False

    def done(row: _AnswerRow, *, stopped: bool = False) -> None:
        results[row.index] = Finished(list(row.tokens), stopped)

    while waiting or batch.rows:
        room = rows - len(batch.rows)
        logits_new = None
        joined: list[_Row] = []
        if waiting and room and (cut or room >= refill or not batch.rows or len(waiting) <= room):
            budget = PREFILL_TOKENS
            while waiting and len(joined) < room and (not joined or len(prompts[waiting[-1]]) <= budget):
                i = waiting.pop()
                budget -= len(prompts[i])
                joined.append(_AnswerRow(prompt=prompts[i], adapter=None, index=i))
            cut = bool(waiting) and len(joined) < room  # the budget ended the group: the next step goes on
            logits_new = batch.prefill(model, joined)
        else:
            logits = batch.decode(model)
        live: list[int] = []
        offset = len(batch.rows) - len(joined)
        rows_now: list[_AnswerRow] = batch.rows  # type: ignore[assignment]  # only answer rows here
        for i, row in enumerate(rows_now):
            if logits_new is not None:
                if i < offset:
                    live.append(i)  # it waits for the joiners' prefill: no new token this step
                    continue
                token = int(torch.argmax(logits_new[i - offset]).item())
            else:
                token = int(torch.argmax(logits[i]).item())
            batch.next[i] = token
            row.tokens.append(token)
            if token in eos:
                done(row)
            elif stops and stop_seen(owner.tokenizer, row.tokens, stops):
                done(row, stopped=True)
            elif len(row.tokens) >= params.max_new_tokens:
                done(row)
            else:
                live.append(i)
        batch.keep(live)
        between_steps()
    return results  # type: ignore[return-value]


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


@dataclass
class _KeptPrefix:
    """A prompt start and its computed keys and values (one row), for :meth:`_Batch.prefill` to reuse."""

    adapter: str | None
    version: int  # the owner's adapters_version when it was computed: a reloaded adapter changes it
    tokens: list[int]
    layers: list[tuple[Any, Any]]  # per layer: keys and values, [1, heads, len(tokens), head dim]

    def reusable(self, rows: Sequence[_Row], version: int) -> int:
        """Tokens of this prefix that every row's prompt starts with, leaving each at least one of its own;
        0 when a row uses another adapter or an adapter was loaded since."""
        if version != self.version or any(row.adapter != self.adapter for row in rows):
            return 0
        return shared_prefix([[*self.tokens, -1], *[row.prompt for row in rows]])


def shared_prefix(prompts: list[list[int]]) -> int:
    """Tokens every prompt starts with, leaving each at least one of its own (it gives the logits)."""
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _pad_left(tensor: Any, width: int) -> Any:
    """``tensor`` with zeros added before its sequence dimension (-2 for a cache, -1 for a mask)."""
    import torch

    dim = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim)

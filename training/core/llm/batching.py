"""Continuous batching of streamed replies on one local model.

Plain Python (torch and transformers, no Django). :class:`StreamBatcher` serves every
:meth:`LocalLLM.stream <training.core.llm.local.LocalLLM.stream>` of one loaded model as a row of
one running batch. Rules:

- **Join and leave at any token.** A new stream is prefilled and joins the running batch at the
  next step; a stream that ends (end of turn, ``max_new_tokens``, its reader went away) leaves at
  once. Nobody waits for someone else's reply to finish.
- **One step at a time, under the model's lock.** A step is one forward pass: the prefill of the
  streams that arrived, then one new token for every row. Between steps the lock is free.
- **Streams come before background work.** A long ``generate`` or scoring call of the same model
  (a teaching run's micro-batch of 64 rows) calls :meth:`StreamBatcher.give_way` at every token: it
  runs the streams' steps itself until no stream is left, then goes on where it stopped. A learner's
  first token waits for one step of that work, not for the whole call.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from training.core.errors import first_line

from .base import GenerationError, GenerationParams, without_nul

MAX_ROWS = 32
"""Streams generated together; more wait (in arrival order) until a row leaves."""

_END = object()


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
    prompt: list[int]
    params: GenerationParams
    adapter: str | None
    generator: Any  # torch.Generator for sampling rows, None for greedy
    out: queue.Queue = field(default_factory=queue.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)
    shown: int = 0  # characters of the decoded reply already handed out
    position: int = 0  # position id of the token this row feeds next


class StreamBatcher:
    """Serve many streams of one model as one continuously batched generation.

    ``owner`` is the :class:`~training.core.llm.local.LocalLLM` whose model, tokenizer, lock and
    adapters are used; ``check_adapter`` raises :class:`GenerationError` for an adapter it lacks.
    A daemon thread runs steps while streams are waiting or running and sleeps otherwise.
    """

    def __init__(self, owner: Any, *, max_rows: int = MAX_ROWS) -> None:
        self.owner = owner
        self.max_rows = max_rows
        self._waiting: list[_Row] = []  # guarded by _wake's lock; never needs the model's lock
        self._wake = threading.Condition()
        self._rows: list[_Row] = []  # the running batch; guarded by the model's lock
        self._admitting: list[_Row] = []  # being prefilled, not yet in the batch
        self._cache: Any = None
        self._mask: Any = None  # [rows, cache length]: 1 for real tokens, 0 for left padding
        self._next: list[int] = []  # the token each row feeds at the next step
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
        row = _Row(prompt=prompt, params=params, adapter=adapter, generator=generator)
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
        return bool(self._rows or self._waiting)

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
        self._fail(self._rows + waiting, GenerationError(self.owner.name, "the model was closed"))
        self._reset()

    # -- reading one stream ---------------------------------------------------------------------

    def _read(self, row: _Row) -> Iterator[str]:
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
                while not self._closed and not self._waiting and not self._rows:
                    self._wake.wait()
                if self._closed:
                    return
            with self.owner._lock:
                if not self._closed:
                    self.step()

    # -- one step (hold the model's lock) -------------------------------------------------------

    def step(self) -> None:
        """Admit waiting streams (prefill), then one new token for every row."""
        import torch

        try:
            with self._model_state() as model, torch.inference_mode():
                self._drop_finished()
                self._admit(model)
                if self._rows:
                    self._decode(model)
                self._drop_finished()
        except Exception as exc:  # out of memory, a broken adapter: every stream in the batch ends
            error = GenerationError(self.owner.name, f"generation failed: {first_line(exc)}")
            self._fail(self._rows + self._admitting, error)
            self._reset()

    @contextlib.contextmanager
    def _model_state(self) -> Iterator[Any]:
        """The model with every adapter layer enabled (rows pick theirs by name); a caller's
        "adapters off" is put back afterwards."""
        model = self.owner._require_model()
        off = bool(self.owner._adapters) and getattr(self.owner, "_adapters_off", False)
        if off:
            model.base_model.enable_adapter_layers()
        try:
            yield model
        finally:
            if off:
                model.base_model.disable_adapter_layers()

    def _admit(self, model: Any) -> None:
        from transformers import DynamicCache

        with self._wake:
            room = max(0, self.max_rows - len(self._rows))
            new, self._waiting = self._waiting[:room], self._waiting[room:]
        new = [row for row in new if not self._ended_before_start(row) and self._adapter_known(row)]
        if not new:
            return
        self._admitting = new
        input_ids, mask = self.owner._left_pad([row.prompt for row in new])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        output = model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **self._adapter_kwargs(new),
        )
        logits = output.logits[:, -1, :]
        for row in new:
            row.position = len(row.prompt)
        self._join(new, cache, mask)
        self._admitting = []
        offset = len(self._rows) - len(new)
        for i, row in enumerate(new):
            self._take(offset + i, row, logits[i])

    def _decode(self, model: Any) -> None:
        import torch

        device = self.owner.device
        input_ids = torch.tensor([[t] for t in self._next], dtype=torch.long, device=device)
        positions = torch.tensor([[row.position] for row in self._rows], dtype=torch.long, device=device)
        width = self._mask.shape[1]
        self._mask = torch.cat(
            [self._mask, torch.ones((len(self._rows), 1), dtype=torch.long, device=device)], 1
        )
        output = model(
            input_ids=input_ids,
            attention_mask=self._mask,
            position_ids=positions,
            past_key_values=self._cache,
            cache_position=torch.tensor([width], dtype=torch.long, device=device),
            use_cache=True,
            **self._adapter_kwargs(self._rows),
        )
        logits = output.logits[:, -1, :]
        for i, row in enumerate(list(self._rows)):
            row.position += 1
            self._take(i, row, logits[i])

    def _adapter_kwargs(self, rows: list[_Row]) -> dict[str, Any]:
        if not self.owner._adapters:
            return {}
        return {"adapter_names": [row.adapter or "__base__" for row in rows]}

    def _take(self, index: int, row: _Row, logits: Any) -> None:
        """Choose row's next token, hand out the text it completes, and note whether it is done."""
        token = self._choose(row, logits)
        self._next[index] = token
        if token in self.owner._eos_ids:
            row.tokens.append(token)
            self._finish(row)
            return
        row.tokens.append(token)
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

    @staticmethod
    def _choose(row: _Row, logits: Any) -> int:
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

    # -- batch bookkeeping ----------------------------------------------------------------------

    def _ended_before_start(self, row: _Row) -> bool:
        if row.cancel.is_set():
            row.out.put(_END)
            return True
        return False

    def _adapter_known(self, row: _Row) -> bool:
        try:
            self.owner._check_adapter(row.adapter)
        except GenerationError as exc:  # unloaded since the stream was asked for
            self._fail([row], exc)
            return False
        return True

    def _finish(self, row: _Row) -> None:
        if not row.cancel.is_set():
            row.out.put(_END)
        row.cancel.set()

    def _join(self, new: list[_Row], cache: Any, mask: Any) -> None:
        """Append the prefilled rows to the running batch, left-padding whichever cache is shorter."""
        import torch

        if not self._rows:
            self._rows, self._cache, self._mask = list(new), cache, mask
            self._next = [0] * len(new)
            return
        width = max(self._mask.shape[1], mask.shape[1])
        old_layers, new_layers = self._cache.layers, cache.layers
        for old, added in zip(old_layers, new_layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(added.keys, width)], 0)
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(added.values, width)], 0)
        self._mask = torch.cat([_pad_left(self._mask, width), _pad_left(mask, width)], 0)
        self._rows.extend(new)
        self._next.extend([0] * len(new))

    def _drop_finished(self) -> None:
        if not any(row.cancel.is_set() for row in self._rows):
            return
        import torch

        keep = [i for i, row in enumerate(self._rows) if not row.cancel.is_set()]
        if not keep:
            self._reset()
            return
        index = torch.tensor(keep, dtype=torch.long, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        # Columns that are padding for every row left are dropped with the rows that needed them.
        start = int(mask.any(0).nonzero()[0].item())
        self._mask = mask[:, start:]
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:, :]
            layer.values = layer.values.index_select(0, index)[:, :, start:, :]
        self._rows = [self._rows[i] for i in keep]
        self._next = [self._next[i] for i in keep]

    def _reset(self) -> None:
        self._rows, self._cache, self._mask, self._next, self._admitting = [], None, None, [], []

    @staticmethod
    def _fail(rows: list[_Row], error: BaseException) -> None:
        for row in rows:
            if not row.cancel.is_set():
                row.out.put(error)
            row.cancel.set()


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

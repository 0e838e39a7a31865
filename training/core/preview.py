"""What a training job will see of a dataset, before it runs: each record rendered with the
student's chat template, its length in tokens, how many records the maximum length cuts, and the
split sizes (the trainer's own split, :func:`split_for_training`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from training.core.datasets import split_for_training


class Tokenizer(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...
    def __call__(self, text: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Bin:
    low: int  # tokens, inclusive
    high: int  # tokens, exclusive
    count: int


@dataclass(frozen=True)
class DatasetPreview:
    shown: list[str]  # the first records as the model sees them
    lengths: list[int]  # every record's length in tokens
    bins: list[Bin]  # a histogram of the lengths
    max_seq_length: int
    truncated: int  # records longer than max_seq_length (the trainer cuts them)
    train: int
    eval: int


def record_text(record: dict[str, Any], method: str, tokenizer: Tokenizer) -> str:
    """The text the trainer sees of one record: the conversation through the chat template (for
    DPO the chosen reply, for KTO the completion; a plain-string prompt stays as it is)."""
    if method == "sft":
        return str(tokenizer.apply_chat_template(record["messages"], tokenize=False))
    reply = record["chosen"] if method == "dpo" else record["completion"]
    prompt = record["prompt"]
    if isinstance(prompt, list):
        reply_turns = reply if isinstance(reply, list) else [{"role": "assistant", "content": reply}]
        return str(tokenizer.apply_chat_template([*prompt, *reply_turns], tokenize=False))
    return f"{prompt}{reply if isinstance(reply, str) else reply[-1]['content']}"


def histogram(lengths: Sequence[int], *, bins: int = 10) -> list[Bin]:
    """``bins`` equal-width bins from 0 to the longest length (widths rounded up to whole tokens)."""
    if not lengths:
        return []
    width = max(1, math.ceil((max(lengths) + 1) / bins))
    counts = [0] * bins
    for n in lengths:
        counts[min(n // width, bins - 1)] += 1
    return [Bin(i * width, (i + 1) * width, c) for i, c in enumerate(counts)]


def dataset_preview(
    records: list[dict[str, Any]],
    method: str,
    tokenizer: Tokenizer,
    *,
    max_seq_length: int,
    eval_fraction: float,
    seed: int,
    shown: int = 5,
) -> DatasetPreview:
    texts = [record_text(r, method, tokenizer) for r in records]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    train, held = split_for_training(records, eval_fraction=eval_fraction, seed=seed)
    return DatasetPreview(
        shown=texts[:shown],
        lengths=lengths,
        bins=histogram(lengths),
        max_seq_length=max_seq_length,
        truncated=sum(n > max_seq_length for n in lengths),
        train=len(train),
        eval=len(held),
    )

"""CPU-only speed-ups for LoRA training: what a GPU gets from its kernels, done the CPU's way.

Each one gives the same loss and gradients as the path it replaces (tests/training/core/test_cpu_paths.py);
only the amount of work changes (figures: docs/decisions.md, docs/benchmarks/train_throughput.md).

- :func:`attend_within_each_sequence`: sdpa sequence by sequence over a padding-free row;
- :class:`SharedPrefixCollator`: examples of a padding-free batch that begin alike (a chat template's
  system prompt) carry those tokens once, and each attends to them;
- :func:`dense_lm_head_on_labelled_positions`: TRL's fused LM head scores only the labelled positions,
  with one dense projection and log-softmax instead of TRL's chunked kernel.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from training.core.llm.batching import shared_prefix

PER_SEQUENCE_SDPA = "teachloop_per_sequence_sdpa"

SHARED_PREFIX = "teachloop_shared_prefix"
"""The batch key (and model keyword) that says how many leading tokens of a row every sequence shares."""

MIN_SHARED_PREFIX = 8
"""Fewer leading tokens in common than this are not worth a batch laid out differently."""


def attend_within_each_sequence(model) -> bool:
    """On a CPU, attend within each sequence of a padding-free row rather than over the whole row.

    Per sequence it is causal, unmasked and exact; sdpa over the row's block-diagonal mask computes
    every query against every key of the row. GPUs keep plain sdpa (one kernel per layer is cheaper).
    Returns whether the model attends this way (a model without sdpa, or eager on purpose, does not);
    only then may its batches share a prefix (:class:`SharedPrefixCollator`).
    """
    if model.config._attn_implementation != "sdpa":  # eager on purpose, or a model without sdpa
        return False
    AttentionInterface.register(PER_SEQUENCE_SDPA, _per_sequence_sdpa)
    AttentionMaskInterface.register(
        PER_SEQUENCE_SDPA, sdpa_mask
    )  # batches that are not padding-free keep their mask
    model.set_attn_implementation(PER_SEQUENCE_SDPA)
    return True


def _per_sequence_sdpa(
    module, query, key, value, attention_mask, *, cu_seq_lens_q=None, cu_seq_lens_k=None, **kwargs
):
    """sdpa run sequence by sequence over a padding-free row (TRL's collator passes the boundaries); any other
    batch (padded, or with a cache) goes to plain sdpa with its mask.

    With a shared prefix of P tokens (``SHARED_PREFIX``), the first sequence holds them and every later
    sequence attends to them as well as, causally, to itself."""
    prefix = int(kwargs.pop(SHARED_PREFIX, 0) or 0)
    packed = (
        cu_seq_lens_q is not None
        and query.shape[0] == 1
        and query.shape[2] == key.shape[2]
        and (cu_seq_lens_k is None or torch.equal(cu_seq_lens_q, cu_seq_lens_k))
    )
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    parts = []
    for i, (start, end) in enumerate(itertools.pairwise(cu_seq_lens_q.tolist())):
        if end <= start:
            continue
        if i == 0 or not prefix:  # no mask: causal within the sequence (module.is_causal)
            keys, values, mask = key[:, :, start:end], value[:, :, start:end], None
        else:
            keys = torch.cat((key[:, :, :prefix], key[:, :, start:end]), dim=2)
            values = torch.cat((value[:, :, :prefix], value[:, :, start:end]), dim=2)
            mask = _prefix_then_causal(end - start, prefix, query.device)
        parts.append(sdpa_attention_forward(module, query[:, :, start:end], keys, values, mask, **kwargs)[0])
    return torch.cat(parts, dim=1), None


def _prefix_then_causal(length: int, prefix: int, device) -> torch.Tensor:
    """[1, 1, length, prefix + length], True where a query may attend: every prefix key, and itself and
    the keys before it."""
    own = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    shared = torch.ones(length, prefix, dtype=torch.bool, device=device)
    return torch.cat((shared, own), dim=1)[None, None]


class SharedPrefixCollator:
    """A padding-free batch whose examples begin with the same tokens computes those tokens once.

    Chat records begin alike: SmolLM2's template puts the same 24-token system prompt before every
    question, a fifth of a teaching record. The row holds the first example whole, then every other
    example without the common prefix; their positions go on from the prefix, and the model's
    attention (:func:`attend_within_each_sequence`, told by the ``SHARED_PREFIX`` key) lets each attend
    to the prefix and to itself. Exact: every example sees the same keys at the same positions as on
    its own, and the prefix's gradient is the sum of what each example sends back to it. The prefix
    ends before every example's first labelled token, so each remainder starts with a token without a
    label and no labelled token is predicted from another example's context.

    ``collate`` is TRL's padding-free collator; batches that share less than :data:`MIN_SHARED_PREFIX`
    tokens, or hold one example, are its own; :func:`shared_prefix_tokens_saved` counts what a batch left out.
    """

    def __init__(self, collate, *, minimum: int = MIN_SHARED_PREFIX) -> None:
        self.collate = collate
        self.minimum = minimum

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        prefix = shared_prefix_length(examples)
        if len(examples) < 2 or prefix < self.minimum:
            return self.collate(examples)
        rest = [
            {key: value[prefix:] if _per_token(value, example) else value for key, value in example.items()}
            for example in examples[1:]
        ]
        batch = self.collate([examples[0], *rest])
        positions = batch["position_ids"]
        bounds = batch["cu_seq_lens_q"].tolist()
        for start, end in itertools.pairwise(bounds[1:]):
            positions[0, start:end] += prefix
        batch[SHARED_PREFIX] = prefix
        return batch


def _per_token(value: Any, example: dict[str, Any]) -> bool:
    return isinstance(value, list) and len(value) == len(example["input_ids"])


def shared_prefix_length(examples: list[dict[str, Any]]) -> int:
    """Leading tokens every example has in common, ending before the earliest labelled token of any."""
    if any(example.get("labels") is None for example in examples):  # every token labelled: share none
        return 0
    labelled = min(
        next((i for i, label in enumerate(example["labels"]) if label != -100), len(example["labels"]))
        for example in examples
    )
    return max(0, min(shared_prefix([example["input_ids"] for example in examples]), labelled - 1))


def shared_prefix_tokens_saved(batch: dict[str, Any]) -> int:
    """How many positions a batch made by :class:`SharedPrefixCollator` left out (0 for any other)."""
    prefix = int(batch.get(SHARED_PREFIX, 0) or 0)
    if not prefix:
        return 0
    return prefix * (len(batch["cu_seq_lens_q"]) - 2)


@contextlib.contextmanager
def dense_lm_head_on_labelled_positions() -> Iterator[None]:
    """While training on a CPU: TRL's fused LM head scores only labelled positions, with a dense projection.

    TRL 1.16 (``trl.trainer.utils.add_fused_lm_head``) projects every position off Triton, and its
    chunked kernel recomputes the projection in backward; the labelled positions of a batch are a few
    hundred, so their logits fit. GPUs keep TRL's kernels; another TRL version is left as it is.
    """
    try:
        trl_utils: Any = importlib.import_module("trl.trainer.utils")  # patched below: typed loosely
    except ImportError:  # pragma: no cover - TRL is a requirement
        yield
        return
    on_triton = getattr(trl_utils, "_use_triton", None)
    chunked: Any = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if on_triton is None or chunked is None:
        yield
        return

    class _CpuDenseOrChunked:
        @staticmethod
        def apply(
            hidden,
            weight,
            bias,
            targets,
            temperature,
            chunk_size,
            softcap=None,
            logit_scale=1.0,
            outputs=("log_probs",),
        ):
            if hidden.device.type != "cpu":
                return chunked.apply(
                    hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs
                )
            return dense_log_probs(
                hidden,
                weight,
                bias,
                targets,
                temperature=temperature,
                softcap=softcap,
                logit_scale=logit_scale,
                outputs=outputs,
            )

    trl_utils._use_triton = lambda device: device.type == "cpu" or on_triton(device)
    trl_utils._ChunkedLogProbFunction = _CpuDenseOrChunked
    try:
        yield
    finally:
        trl_utils._use_triton = on_triton
        trl_utils._ChunkedLogProbFunction = chunked


def dense_log_probs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    outputs: tuple[str, ...] = ("log_probs",),
):
    """What TRL's ``ChunkedLogProbFunction.apply`` returns, computed densely with autograd.

    Returns ``(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1)`` for ``hidden`` [N, H] against the
    vocabulary ``weight`` [V, H]; fields not in ``outputs`` are None. ``log_probs`` and ``entropy``
    carry gradients (TRL's kernel differentiates both); the others are statistics without one.
    """
    z = F.linear(hidden, weight, bias).float() * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z / temperature
    log_p = torch.log_softmax(z, dim=-1)
    log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
    with torch.no_grad():
        log_sum_sq_probs = torch.logsumexp(2 * log_p, dim=-1) if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1) if "mean_logits" in outputs else None
        # argmax returns the first maximum: a tie with an earlier token is not top-1 (as in TRL's kernel)
        is_top1 = z.argmax(-1) == targets if "is_top1" in outputs else None
    return log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1

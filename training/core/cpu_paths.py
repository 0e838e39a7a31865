"""CPU-only speed-ups for LoRA training: what a GPU gets from its kernels, done the CPU's way.

Each one gives the same loss and gradients as the path it replaces (tests/training/core/test_cpu_paths.py);
only the amount of work changes (figures: docs/decisions.md, docs/benchmarks/train_throughput.md).

- :func:`attend_within_each_sequence`: sdpa sequence by sequence over a padding-free row;
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

PER_SEQUENCE_SDPA = "teachloop_per_sequence_sdpa"


def attend_within_each_sequence(model) -> None:
    """On a CPU, attend within each sequence of a padding-free row rather than over the whole row.

    Per sequence it is causal, unmasked and exact; sdpa over the row's block-diagonal mask computes
    every query against every key of the row. GPUs keep plain sdpa (one kernel per layer is cheaper).
    """
    if model.config._attn_implementation != "sdpa":  # eager on purpose, or a model without sdpa
        return
    AttentionInterface.register(PER_SEQUENCE_SDPA, _per_sequence_sdpa)
    AttentionMaskInterface.register(
        PER_SEQUENCE_SDPA, sdpa_mask
    )  # batches that are not padding-free keep their mask
    model.set_attn_implementation(PER_SEQUENCE_SDPA)


def _per_sequence_sdpa(
    module, query, key, value, attention_mask, *, cu_seq_lens_q=None, cu_seq_lens_k=None, **kwargs
):
    """sdpa run sequence by sequence over a padding-free row (TRL's collator passes the boundaries); any other
    batch (padded, or with a cache) goes to plain sdpa with its mask."""
    packed = (
        cu_seq_lens_q is not None
        and query.shape[0] == 1
        and query.shape[2] == key.shape[2]
        and (cu_seq_lens_k is None or torch.equal(cu_seq_lens_q, cu_seq_lens_k))
    )
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bounds = cu_seq_lens_q.tolist()
    parts = [
        sdpa_attention_forward(
            module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None, **kwargs
        )[0]  # no mask: causal within the sequence (module.is_causal)
        for start, end in itertools.pairwise(bounds)
        if end > start
    ]
    return torch.cat(parts, dim=1), None


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

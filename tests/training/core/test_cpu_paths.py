"""The CPU paths give what TRL's kernels give: same log-probabilities, statistics and gradients."""

from __future__ import annotations

import pytest
import torch
import trl.trainer.utils as trl_utils
from trl.kernels.chunked_logprob import ChunkedLogProbFunction

from training.core.cpu_paths import dense_lm_head_on_labelled_positions, dense_log_probs

OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def _inputs(seed: int, n: int = 12, hidden: int = 16, vocab: int = 300):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=gen, dtype=torch.float32)
    w = torch.randn(vocab, hidden, generator=gen, dtype=torch.float32) * 0.5
    b = torch.randn(vocab, generator=gen, dtype=torch.float32) * 0.1
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[0] = int((h[0] @ w.t() + b).argmax())  # one position whose target is the top-1 token
    return h, w, b, targets


@pytest.mark.parametrize(("temperature", "softcap", "scale"), [(1.0, None, 1.0), (0.7, 5.0, 0.5)])
def test_it_matches_trls_chunked_kernel_values_and_gradients(temperature, softcap, scale):
    h, w, b, targets = _inputs(0)
    # A vocabulary chunk smaller than the vocabulary, so TRL's online log-sum-exp folds several tiles.
    h_ref = h.clone().requires_grad_(True)
    ref = ChunkedLogProbFunction.apply(h_ref, w, b, targets, temperature, 64, softcap, scale, OUTPUTS)
    h_new = h.clone().requires_grad_(True)
    new = dense_log_probs(
        h_new, w, b, targets, temperature=temperature, softcap=softcap, logit_scale=scale, outputs=OUTPUTS
    )

    for name, expected, got in zip(OUTPUTS, ref, new, strict=True):
        if name == "is_top1":
            assert torch.equal(expected, got) and bool(got[0])
        else:
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=name)
    # The loss TRL builds (-sum of log-probs) plus an entropy term, so both gradients are checked.
    (-(ref[0].sum()) + 0.3 * ref[1].sum()).backward()
    (-(new[0].sum()) + 0.3 * new[1].sum()).backward()
    torch.testing.assert_close(h_new.grad, h_ref.grad, rtol=1e-4, atol=1e-5)


def test_it_leaves_fields_not_asked_for_empty():
    h, w, _, targets = _inputs(1)
    log_probs, entropy, sq, mean, top1 = dense_log_probs(h, w, None, targets, outputs=("log_probs",))
    assert log_probs.shape == (12,) and (log_probs <= 0).all()
    assert (entropy, sq, mean, top1) == (None, None, None, None)


def test_it_swaps_trls_head_only_inside_the_block_and_only_for_cpu_tensors():
    before = (trl_utils._use_triton, trl_utils._ChunkedLogProbFunction)
    h, w, b, targets = _inputs(2)
    with dense_lm_head_on_labelled_positions():
        assert trl_utils._use_triton(torch.device("cpu"))  # only labelled positions are scored
        swapped = trl_utils._ChunkedLogProbFunction.apply(h, w, b, targets, 1.0, 64, None, 1.0, OUTPUTS)
    assert (trl_utils._use_triton, trl_utils._ChunkedLogProbFunction) == before
    assert not trl_utils._use_triton(torch.device("cpu"))
    expected = ChunkedLogProbFunction.apply(h, w, b, targets, 1.0, 64, None, 1.0, OUTPUTS)
    torch.testing.assert_close(swapped[0], expected[0])


def test_it_restores_trl_when_training_raises():
    before = trl_utils._ChunkedLogProbFunction
    with pytest.raises(RuntimeError), dense_lm_head_on_labelled_positions():
        raise RuntimeError("out of memory")
    assert trl_utils._ChunkedLogProbFunction is before

"""Bayesian knowledge tracing (Corbett & Anderson, 1995)."""

from __future__ import annotations

import itertools
import math

import pytest

from tutor.core.learn.mastery import MASTERY_THRESHOLD, BKTParams, bkt_trace, bkt_update, p_correct

DEFAULT = BKTParams()


def test_it_has_the_documented_defaults():
    assert BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1) == DEFAULT
    assert MASTERY_THRESHOLD == 0.95


def test_it_matches_one_step_computed_by_hand():
    # Correct answer from P(L)=0.2:
    #   posterior = 0.2*(1-0.1) / (0.2*(1-0.1) + 0.8*0.2) = 0.18 / 0.34 = 9/17
    #   then learning: 9/17 + (8/17)*0.15 = (9 + 1.2)/17 = 10.2/17 = 0.6
    assert bkt_update(0.2, True, DEFAULT) == pytest.approx(0.6)
    # Wrong answer from P(L)=0.2:
    #   posterior = 0.2*0.1 / (0.2*0.1 + 0.8*(1-0.2)) = 0.02 / 0.66 = 1/33
    #   then learning: 1/33 + (32/33)*0.15 = (1 + 4.8)/33 = 5.8/33 ≈ 0.17576
    assert bkt_update(0.2, False, DEFAULT) == pytest.approx(5.8 / 33)
    # P(correct) = 0.2*0.9 + 0.8*0.2 = 0.34
    assert p_correct(0.2, DEFAULT) == pytest.approx(0.34)


def test_it_raises_mastery_after_a_correct_answer():
    for p in (0.0, 0.2, 0.5, 0.9):
        assert bkt_update(p, True, DEFAULT) > p


def test_it_lowers_the_posterior_after_a_wrong_answer():
    # Without the learning transition the evidence alone must lower P(L).
    no_learning = BKTParams(learn=0.0)
    for p in (0.2, 0.5, 0.9, 0.99):
        assert bkt_update(p, False, no_learning) < p
    assert bkt_update(0.9, False, DEFAULT) < 0.9


def test_it_converges_above_the_mastery_threshold_with_repeated_correct_answers():
    trace = bkt_trace([True] * 6, DEFAULT)
    assert len(trace) == 6
    assert all(later > earlier for earlier, later in itertools.pairwise(trace))
    assert trace[0] == pytest.approx(0.6)
    assert trace[-1] > MASTERY_THRESHOLD
    assert bkt_trace([True] * 50, DEFAULT)[-1] == pytest.approx(1.0)


def test_it_traces_a_mixed_sequence_step_by_step():
    observations = [True, False, True, True]
    p = DEFAULT.prior
    expected = []
    for correct in observations:
        p = bkt_update(p, correct, DEFAULT)
        expected.append(p)
    assert bkt_trace(observations, DEFAULT) == expected
    assert bkt_trace([], DEFAULT) == []


def test_it_keeps_a_certainty_that_an_answer_cannot_move():
    # slip = 0: a known skill never gives a wrong answer; P(L)=1 stays 1 instead of dividing by zero.
    assert bkt_update(1.0, False, BKTParams(slip=0.0)) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prior": -0.1},
        {"learn": 1.5},
        {"guess": math.nan},
        {"slip": "0.1"},
        {"prior": True},
        {"guess": 0.5, "slip": 0.5},
        {"guess": 0.7, "slip": 0.6},
    ],
)
def test_it_rejects_invalid_params(kwargs):
    with pytest.raises(ValueError):
        BKTParams(**kwargs)


def test_it_rejects_a_probability_outside_zero_and_one():
    with pytest.raises(ValueError, match="p_known"):
        bkt_update(1.2, True, DEFAULT)


def test_it_is_frozen():
    with pytest.raises(AttributeError):
        DEFAULT.prior = 0.5  # type: ignore[misc]

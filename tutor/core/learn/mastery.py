"""Mastery per learner and skill by Bayesian knowledge tracing (BKT).

Corbett, A. T. & Anderson, J. R. (1995). Knowledge tracing: Modeling the acquisition of procedural
knowledge. *User Modeling and User-Adapted Interaction* 4(4), 253–278.

Each skill is either known or not. ``p_known`` is the probability that it is known. After every
graded answer:

1. **evidence** (Bayes' rule): a correct answer comes from a known skill that did not slip, or an
   unknown one that guessed; a wrong answer from a known skill that slipped, or an unknown one
   that did not guess;
2. **learning**: the learner may have learned the skill at this practice opportunity,
   ``p' = post + (1 - post) * learn``. Knowledge is never forgotten within BKT; forgetting over
   time is the job of the spaced reviews (``tutor.core.learn.review``).

A skill counts as mastered once ``p_known >= MASTERY_THRESHOLD`` (0.95, the criterion used by
Corbett & Anderson and by the cognitive tutors since).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

MASTERY_THRESHOLD = 0.95


@dataclass(frozen=True)
class BKTParams:
    """The four BKT probabilities of one skill; the defaults suit a skill no one has fitted yet.

    - ``prior``: P(L0), known before the first practice;
    - ``learn``: P(T), learned at one practice opportunity;
    - ``guess``: P(G), correct although not known;
    - ``slip``: P(S), wrong although known.

    Every value is a probability in [0, 1], and ``guess + slip < 1``. That second rule is what
    makes an answer evidence at all: a correct answer is ``(1 - slip) / guess`` times likelier from
    a learner who knows the skill, which is above 1 exactly when ``guess + slip < 1``. At equality
    answers say nothing; above it the model is *degenerate* (Baker, Corbett & Aleven, 2008) and a
    correct answer would lower mastery.
    """

    prior: float = 0.2
    learn: float = 0.15
    guess: float = 0.2
    slip: float = 0.1

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            # bool is an int subclass; True as a probability is a bug, not a 1.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{field.name} must be a number, not {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{field.name} must be a probability in [0, 1], not {value!r}")
            object.__setattr__(self, field.name, float(value))
        if self.guess + self.slip >= 1.0:
            raise ValueError(
                f"guess + slip must be below 1 (got {self.guess} + {self.slip}); "
                "otherwise a correct answer is no evidence that the skill is known"
            )


DEFAULT_PARAMS = BKTParams()


def p_correct(p_known: float, params: BKTParams = DEFAULT_PARAMS) -> float:
    """The probability that the next answer is correct: ``p (1 - slip) + (1 - p) guess``."""
    _check_probability(p_known)
    return p_known * (1.0 - params.slip) + (1.0 - p_known) * params.guess


def bkt_update(p_known: float, correct: bool, params: BKTParams = DEFAULT_PARAMS) -> float:
    """``p_known`` after one graded answer: the Bayesian posterior, then the learning transition."""
    _check_probability(p_known)
    if correct:
        known = p_known * (1.0 - params.slip)
        unknown = (1.0 - p_known) * params.guess
    else:
        known = p_known * params.slip
        unknown = (1.0 - p_known) * (1.0 - params.guess)
    # guess + slip < 1 keeps the denominator positive unless p_known is 0 or 1 and the answer is
    # impossible under it (e.g. p_known = 1, slip = 0, wrong answer): then the evidence cannot move
    # a certainty, so keep it.
    total = known + unknown
    posterior = known / total if total > 0.0 else p_known
    return posterior + (1.0 - posterior) * params.learn


def bkt_trace(observations: Iterable[bool], params: BKTParams = DEFAULT_PARAMS) -> list[float]:
    """``p_known`` after each answer in order, starting from ``params.prior``; one value per answer."""
    trace: list[float] = []
    p_known = params.prior
    for correct in observations:
        p_known = bkt_update(p_known, bool(correct), params)
        trace.append(p_known)
    return trace


def is_mastered(p_known: float, threshold: float = MASTERY_THRESHOLD) -> bool:
    return p_known >= threshold


def _check_probability(p_known: float) -> None:
    if isinstance(p_known, bool) or not isinstance(p_known, (int, float)) or not 0.0 <= p_known <= 1.0:
        raise ValueError(f"p_known must be a probability in [0, 1], not {p_known!r}")

"""Which skill a human learner practises next.

The rule, in order:

1. **review**: with probability ``review_share``, or always when nothing else is left to learn,
   the most overdue due review (``reviews_due`` comes from ``tutor.core.learn.review.due``, most
   overdue first);
2. **new**: an unlocked skill (every prerequisite mastered) the learner has not started (no
   entry in ``mastery``), first in course order, so prerequisites open up the graph;
3. **weakest**: otherwise the unlocked, unmastered skill with the lowest mastery;
4. when every skill is mastered and no review is due: the skill mastered longest ago (if
   ``mastered_at`` is given) or the lowest one, as an early review (reason "review").

Ties go to course order (the order of ``skills``). The only randomness is the review coin,
drawn from the caller's ``rng``, so a seeded ``random.Random`` makes the choice reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from tutor.core.learn.mastery import MASTERY_THRESHOLD

Reason = Literal["review", "new", "weakest"]


@dataclass(frozen=True)
class NextChoice:
    skill: str
    reason: Reason


def choose_next_skill(
    skills: Sequence[tuple[str, Sequence[str]]],
    mastery: Mapping[str, float],
    reviews_due: Sequence[str],
    *,
    threshold: float = MASTERY_THRESHOLD,
    review_share: float = 0.3,
    rng: random.Random,
    mastered_at: Mapping[str, datetime] | None = None,
) -> NextChoice:
    """The next skill and why; ``skills`` is ``[(key, prerequisite keys), ...]`` in course order.

    ``mastery`` maps skill key to P(known); a skill missing from it has not been started.
    Reviews of skills outside ``skills`` are ignored (a learner's reviews may span courses).
    Raises ``ValueError`` for an empty course, duplicate keys, unknown prerequisites or a
    prerequisite cycle (its skills could never unlock).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], not {threshold!r}")
    if not 0.0 <= review_share <= 1.0:
        raise ValueError(f"review_share must be in [0, 1], not {review_share!r}")
    order = _check_graph(skills)

    def mastered(key: str) -> bool:
        return mastery.get(key, 0.0) >= threshold

    due = [key for key in reviews_due if key in order]
    unlocked = [
        key for key, prerequisites in skills if not mastered(key) and all(mastered(p) for p in prerequisites)
    ]

    if due and (not unlocked or rng.random() < review_share):
        return NextChoice(due[0], "review")
    if unlocked:
        new = [key for key in unlocked if key not in mastery]
        if new:
            return NextChoice(new[0], "new")
        return NextChoice(min(unlocked, key=lambda key: (mastery[key], order[key])), "weakest")
    # Everything is mastered (an acyclic graph always has an unlocked skill otherwise).
    if mastered_at:
        # Skills with no recorded date count as mastered longest ago.
        return NextChoice(
            min(order, key=lambda key: (key in mastered_at, mastered_at.get(key), order[key])), "review"
        )
    return NextChoice(min(order, key=lambda key: (mastery[key], order[key])), "review")


def _check_graph(skills: Sequence[tuple[str, Sequence[str]]]) -> dict[str, int]:
    """Course order of each key, after checking the prerequisite graph is usable."""
    if not skills:
        raise ValueError("a course needs at least one skill")
    order: dict[str, int] = {}
    for index, (key, _prerequisites) in enumerate(skills):
        if key in order:
            raise ValueError(f"skill {key!r} is listed twice")
        order[key] = index
    prerequisites = {key: list(prereqs) for key, prereqs in skills}
    for key, prereqs in prerequisites.items():
        unknown = [p for p in prereqs if p not in order]
        if unknown:
            raise ValueError(f"skill {key!r} needs unknown prerequisites: {', '.join(unknown)}")
    # Depth-first search for a cycle: 1 = on the current path, 2 = done.
    colour: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> None:
        colour[key] = 1
        for p in prerequisites[key]:
            if colour.get(p) == 1:
                here = [*path, key]
                cycle = [*here[here.index(p) :], p]
                raise ValueError(f"prerequisite cycle: {' -> '.join(cycle)}")
            if p not in colour:
                visit(p, [*path, key])
        colour[key] = 2

    for key in order:
        if key not in colour:
            visit(key, [])
    return order

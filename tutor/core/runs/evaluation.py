"""Evaluate a student, with and without adapters, on a course's items: accuracy per skill with a
Wilson interval, and where an adapter differs from the base beyond noise.

Both answer the same items, so a difference is judged on the items they disagree on (McNemar's
exact test, two-sided, 5%): gained items against lost ones. Answers are greedy and asked with the
plain student prompt, graded like the run's exam."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from training.core.llm.base import LLM, GenerationParams
from tutor.core.courses.course import Exercise
from tutor.core.runs import prompts
from tutor.core.runs.state import Answer
from tutor.core.runs.steps import ask, graded

Z = 1.96  # 95%


def wilson(correct: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of ``correct`` of ``n`` ((0, 1) when nothing was asked)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - spread), min(1.0, centre + spread)


@dataclass(frozen=True)
class Score:
    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)


def mcnemar_p(gained: int, lost: int) -> float:
    """McNemar's exact two-sided p-value for ``gained`` items right only after and ``lost`` items
    right only before (1 when they agree on every item)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1))
    return min(1.0, 2 * tail / 2**n)


def versus_base(
    items: Sequence[Exercise], base: Mapping[str, Answer], other: Mapping[str, Answer], *, alpha: float = 0.05
) -> dict[str, int]:
    """Per skill and ``"all"``: +1 (-1) where ``other`` is right on significantly more (fewer) of the
    same items than ``base``, else 0."""
    marks = {}
    for skill, group in by_skill(items).items():
        gained = sum(other[e.key].correct and not base[e.key].correct for e in group)
        lost = sum(base[e.key].correct and not other[e.key].correct for e in group)
        significant = mcnemar_p(gained, lost) < alpha
        marks[skill] = (1 if gained > lost else -1) if significant else 0
    return marks


def answers(
    llm: LLM, items: Sequence[Exercise], *, adapter: str | None, max_new_tokens: int = 128
) -> dict[str, Answer]:
    """The student's graded answer to every item, by key (one batched call)."""
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
    texts = ask(llm, [prompts.student_prompt(e) for e in items], params, adapter=adapter)
    return {e.key: graded(e, text) for e, text in zip(items, texts, strict=True)}


def by_skill(items: Sequence[Exercise]) -> dict[str, list[Exercise]]:
    """The items of each skill, in the items' order, and every item under ``"all"``, last."""
    groups: dict[str, list[Exercise]] = {}
    for e in items:
        groups.setdefault(e.skill, []).append(e)
    groups["all"] = list(items)
    return groups


def per_skill(items: Sequence[Exercise], graded_answers: Mapping[str, Answer]) -> dict[str, Score]:
    """A score per skill (:func:`by_skill`)."""
    return {
        skill: Score(sum(graded_answers[e.key].correct for e in group), len(group))
        for skill, group in by_skill(items).items()
    }


def table(
    columns: Mapping[str, Mapping[str, Score]], marks: Mapping[str, Mapping[str, int]] | None = None
) -> str:
    """A plain-text table: one row per skill, one column per student; ``marks`` (by column, then
    skill: :func:`versus_base`) adds ``+``/``-`` to a score above/below the first column's."""
    names = list(columns)
    skills = list(columns[names[0]])
    cells = [["skill", "n", *names]]
    for skill in skills:
        row = [skill, str(columns[names[0]][skill].n)]
        for name in names:
            score = columns[name][skill]
            low, high = score.interval
            mark = {1: " +", -1: " -", 0: ""}[(marks or {}).get(name, {}).get(skill, 0)]
            row.append(f"{score.accuracy:.0%} [{low:.0%}-{high:.0%}]{mark}")
        cells.append(row)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )

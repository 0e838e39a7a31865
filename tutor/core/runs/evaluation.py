"""Evaluate a student, with and without adapters, on a course's items: accuracy per skill with a
Wilson interval, and where an adapter differs from the base beyond noise.

Both answer the same items, so a difference is judged on the items they disagree on (McNemar's
exact test, two-sided, 5%): gained items against lost ones. Answers are greedy and asked with the
plain student prompt, graded like the run's exam."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.core.llm.base import LLM, GenerationParams
from tutor.core.courses.course import Course, Exercise
from tutor.core.runs import prompts
from tutor.core.runs.state import Answer
from tutor.core.runs.steps import ask, graded

Z = 1.96  # 95%
ALPHA = 0.05  # McNemar's test: a difference beyond noise
BATCH = 32  # items per generate call: progress is reported after each
# The grading rules' version: stored answers graded under other rules are never reused. Change it
# whenever ``steps.graded`` judges an answer differently.
GRADING = "strict-2026-12"

SPLITS = {
    "exam": "the exam split",
    "held-out": "the exam items asked in held-out phrasings (never in any training data)",
    "keep": "the exam items of the keep skills (never taught)",
    "probe": "the probe split",
}


def select_items(course: Course, split: str) -> list[Exercise]:
    """The items of ``course`` that ``split`` (a key of :data:`SPLITS`) names, in course order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if split == "probe":
        return list(course.split("probe"))
    exam = course.split("exam")
    if split == "held-out":
        return [e for e in exam if e.held_out]
    if split == "keep":
        keep = {s.key for s in course.keep_skills}
        return [e for e in exam if e.skill in keep]
    return list(exam)


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
    items: Sequence[Exercise],
    base: Mapping[str, Answer],
    other: Mapping[str, Answer],
    *,
    alpha: float = ALPHA,
) -> dict[str, int]:
    """Per skill and ``"all"``: +1 (-1) where ``other`` is right on significantly more (fewer) of the
    same items than ``base``, else 0."""
    return {
        skill: mark(
            sum(other[e.key].correct and not base[e.key].correct for e in group),
            sum(base[e.key].correct and not other[e.key].correct for e in group),
            alpha=alpha,
        )
        for skill, group in by_skill(items).items()
    }


def mark(gained: int, lost: int, *, alpha: float = ALPHA) -> int:
    """+1 (-1) when ``gained`` items against ``lost`` is a gain (a loss) beyond chance, else 0."""
    if mcnemar_p(gained, lost) >= alpha:
        return 0
    return 1 if gained > lost else -1


def answers(
    llm: LLM,
    items: Sequence[Exercise],
    *,
    adapter: str | None,
    max_new_tokens: int = 128,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Answer]:
    """The student's graded answer to every item, by key, in batched calls of :data:`BATCH` items;
    ``progress(done)`` is called after each."""
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
    graded_answers: dict[str, Answer] = {}
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        texts = ask(llm, [prompts.student_prompt(e) for e in chunk], params, adapter=adapter)
        graded_answers.update({e.key: graded(e, text) for e, text in zip(chunk, texts, strict=True)})
        if progress is not None:
            progress(len(graded_answers))
    return graded_answers


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


def comparison(items: Sequence[Exercise], columns: Mapping[str, Mapping[str, bool]]) -> dict[str, Any]:
    """Columns (by label, the first the reference: the base) of right/wrong per item key, as a
    JSON-ready comparison: per skill and ``"all"`` (:func:`by_skill`), each column's right count, n,
    accuracy and Wilson interval, and for every column after the first its ``mark`` against the first
    (+1 / -1: right on significantly more / fewer of the same items, McNemar, :data:`ALPHA`; else 0)
    with the items gained and lost."""
    labels = list(columns)
    rows = []
    for skill, group in by_skill(items).items():
        cells = []
        for label in labels:
            right = [columns[label][e.key] for e in group]
            low, high = wilson(sum(right), len(group))
            cell: dict[str, Any] = {
                "label": label,
                "correct": sum(right),
                "n": len(group),
                "accuracy": sum(right) / len(group) if group else 0.0,
                "low": low,
                "high": high,
            }
            if label != labels[0]:
                base = columns[labels[0]]
                gained = sum(columns[label][e.key] and not base[e.key] for e in group)
                lost = sum(base[e.key] and not columns[label][e.key] for e in group)
                significant = mcnemar_p(gained, lost) < ALPHA
                cell.update(gained=gained, lost=lost, mark=(1 if gained > lost else -1) if significant else 0)
            cells.append(cell)
        rows.append({"skill": skill, "n": len(group), "cells": cells})
    return {"labels": labels, "rows": rows}

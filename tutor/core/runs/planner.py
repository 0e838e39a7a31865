"""The curriculum for one round of a teaching run: how many items per skill, at what level.

Rules (``acc`` is a skill's latest probe accuracy; thresholds are settings):

1. **Prerequisites first.** A skill unlocks once every prerequisite has reached ``unlock_threshold``
   (0.5) in some round (its best accuracy, so the zone only grows, as in ZPDES). With
   ``probe_sizes`` given, a prerequisite keeps its dependants locked only while the Wilson upper
   bound (``confidence_z``) of its accuracy is below the threshold: only evidence closes the gate.
2. **Mastered skills get review only**: ``acc >= 0.8`` shares ``review_share`` of the budget with
   the other mastered skills (all of it when every skill is mastered).
3. **Learning progress for the rest**: each unlocked, unmastered skill is drawn with probability
   ``(1 - epsilon) * LP / sum(LP) + epsilon / K``, ``LP = |acc_t - acc_(t-1)|`` over the rounds since
   it unlocked, read as its upper confidence bound when ``probe_sizes`` are given. A skill with one
   measurement counts as the highest LP seen; no LP anywhere means uniform. The budget is shared out
   by seeded systematic sampling (:func:`allocate`): expected shares rounded, none starved by luck.
4. **Difficulty only escalates**: a skill's level rises by one when ``acc`` reaches 0.7, up to its
   top level; a dip is met with more items, not easier ones.

:func:`random_plan` is the control arm: the same budget uniformly over all skills, random levels.
Why these rules, with the measurements behind them: docs/decisions.md.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from tutor.core.courses.course import Course, Skill

MASTERY_THRESHOLD = 0.8
UNLOCK_THRESHOLD = 0.5
ESCALATION_THRESHOLD = 0.7
EPSILON = 0.2
REVIEW_SHARE = 0.1
CONFIDENCE_Z = 1.96


def upper_bound(accuracy: float, n: int | None, z: float) -> float:
    """The Wilson score interval's upper bound of an accuracy measured on ``n`` items (the accuracy
    itself when ``n`` is unknown or ``z`` is 0)."""
    if not n or not z:
        return accuracy
    z2 = z * z
    centre = accuracy + z2 / (2 * n)
    spread = z * math.sqrt(accuracy * (1 - accuracy) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


def progress_noise(before: float, after: float, n: int | None, z: float) -> float:
    """``z`` standard errors of the difference of two accuracies measured on ``n`` items each, with one
    success and one failure added to each (Agresti-Caffo); 0 when ``n`` is unknown."""
    if not n or not z:
        return 0.0
    p, q = (before * n + 1) / (n + 2), (after * n + 1) / (n + 2)
    return z * math.sqrt(p * (1 - p) / (n + 2) + q * (1 - q) / (n + 2))


@dataclass(frozen=True)
class Plan:
    """Items per skill (every skill of the course, 0 for none), the level to draw them at,
    and a human-readable reason per skill (shown on the run's page)."""

    items_per_skill: dict[str, int]
    difficulty_per_skill: dict[str, int]
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.items_per_skill.values())


def _check_fraction(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], not {value!r}")


def _check_budget(budget: int) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"budget must be an integer >= 0, not {budget!r}")


def _check_levels(skills: Sequence[Skill], max_levels: Mapping[str, int] | None) -> dict[str, int]:
    levels = {s.key: (max_levels or {}).get(s.key, 1) for s in skills}
    bad = {k: v for k, v in levels.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"max levels must be integers >= 1: {bad}")
    return levels


class Planner:
    """Plans rounds over a fixed set of skills; see the module docstring for the rules.

    ``max_levels`` maps skill key to its highest difficulty level; a skill missing from it has
    one level (never escalates). :meth:`from_course` reads them from the course's exercises.
    """

    def __init__(
        self,
        skills: Sequence[Skill],
        *,
        max_levels: Mapping[str, int] | None = None,
        mastery_threshold: float = MASTERY_THRESHOLD,
        unlock_threshold: float = UNLOCK_THRESHOLD,
        escalation_threshold: float = ESCALATION_THRESHOLD,
        epsilon: float = EPSILON,
        review_share: float = REVIEW_SHARE,
        confidence_z: float = CONFIDENCE_Z,
    ) -> None:
        keys = [s.key for s in skills]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate skill keys")
        unknown = sorted({p for s in skills for p in s.prerequisites} - set(keys))
        if unknown:
            raise ValueError(f"unknown prerequisite(s) {unknown}")
        _check_fraction(mastery_threshold, "mastery_threshold")
        _check_fraction(unlock_threshold, "unlock_threshold")
        _check_fraction(escalation_threshold, "escalation_threshold")
        _check_fraction(epsilon, "epsilon")
        _check_fraction(review_share, "review_share")
        if (
            isinstance(confidence_z, bool)
            or not isinstance(confidence_z, (int, float))
            or not math.isfinite(confidence_z)
            or confidence_z < 0
        ):
            raise ValueError(f"confidence_z must be a number >= 0, not {confidence_z!r}")
        self.skills = tuple(skills)
        self.max_levels = _check_levels(self.skills, max_levels)
        self.mastery_threshold = mastery_threshold
        self.unlock_threshold = unlock_threshold
        self.escalation_threshold = escalation_threshold
        self.epsilon = epsilon
        self.review_share = review_share
        self.confidence_z = float(confidence_z)

    @classmethod
    def from_course(cls, course: Course, **options: float) -> Planner:
        """A planner over the skills the course teaches (its keep skills are watched, never taught,
        nor waited for as prerequisites), levels up to the highest of each skill's items."""
        keys = {s.key for s in course.taught_skills}
        skills = [
            replace(s, prerequisites=tuple(p for p in s.prerequisites if p in keys))
            for s in course.taught_skills
        ]
        levels = {s.key: course.max_difficulty(s.key) for s in skills}
        return cls(skills, max_levels=levels, **options)

    def plan(
        self,
        history: Mapping[str, Sequence[float]],
        budget: int,
        *,
        seed: int,
        difficulty: Mapping[str, int] | None = None,
        probe_sizes: Mapping[str, int] | None = None,
    ) -> Plan:
        """The plan for the next round.

        ``history`` maps skill key to its accuracies so far, one per round, oldest first (a
        skill not examined yet may be missing). ``difficulty`` is the previous round's
        ``difficulty_per_skill`` (level 1 where missing). ``probe_sizes`` maps skill key to the
        number of items each of its accuracies was measured on; where given, the gate and learning
        progress allow for the probe's noise (module docstring); where missing, accuracies are
        taken as exact.
        """
        _check_budget(budget)
        sizes = self._check_sizes(probe_sizes)
        latest = self._latest(history)
        best = {key: max(history[key]) for key in latest}
        threshold = self.mastery_threshold
        mastered = [s.key for s in self.skills if latest.get(s.key, -1.0) >= threshold]
        reasons: dict[str, str] = {}
        active: list[str] = []
        taught: dict[str, list[float]] = {}  # each active skill's accuracies since it was unlocked
        for skill in self.skills:
            if skill.key in mastered:
                reasons[skill.key] = f"mastered ({latest[skill.key]:.2f} >= {threshold}): review"
                continue
            missing = [p for p in skill.prerequisites if not self._reached(p, best.get(p), sizes)]
            if missing:
                reasons[skill.key] = "locked: needs " + ", ".join(
                    self._why_not(p, best.get(p), sizes) for p in missing
                )
            else:
                active.append(skill.key)
                taught[skill.key] = self._since_unlocked(skill, history, sizes)

        n_review = 0
        if mastered:
            # Everything mastered: the whole round is review. Otherwise a small share.
            n_review = budget if not active else round(budget * self.review_share)
        rng = random.Random(seed)
        counts: Counter[str] = Counter()
        if active:
            weights = self._active_weights(active, taught, reasons, sizes)
            counts.update(allocate(active, weights, budget - n_review, rng))
            for skill in self.skills:
                if skill.key in active:
                    self._note_uncertain_gate(skill, best, sizes, reasons)
        if n_review:
            counts.update(allocate(mastered, [1.0] * len(mastered), n_review, rng))

        levels = self._levels(latest, difficulty, reasons)
        return Plan(
            items_per_skill={s.key: counts[s.key] for s in self.skills},
            difficulty_per_skill=levels,
            reasons=reasons,
        )

    def _check_sizes(self, sizes: Mapping[str, int] | None) -> dict[str, int]:
        known = {s.key for s in self.skills}
        checked = dict(sizes or {})
        for key, n in checked.items():
            if key not in known:
                raise ValueError(f"probe size for unknown skill {key!r}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"probe size of {key} must be an integer >= 1, not {n!r}")
        return checked

    def _reached(self, key: str, best: float | None, sizes: Mapping[str, int]) -> bool:
        """Whether a prerequisite with this best accuracy lets its dependants open: not examined
        never does; otherwise unless its accuracy is below the threshold beyond the probe's noise."""
        return (
            best is not None and upper_bound(best, sizes.get(key), self.confidence_z) >= self.unlock_threshold
        )

    def _why_not(self, key: str, best: float | None, sizes: Mapping[str, int]) -> str:
        if best is None:
            return f"{key} (not examined)"
        n = sizes.get(key)
        if not n or not self.confidence_z:
            return f"{key} (best {best:.2f} < {self.unlock_threshold})"
        bound = upper_bound(best, n, self.confidence_z)
        return f"{key} (best {best:.2f} of {n} items, at most {bound:.2f} < {self.unlock_threshold})"

    def _note_uncertain_gate(
        self, skill: Skill, best: Mapping[str, float], sizes: Mapping[str, int], reasons: dict[str, str]
    ) -> None:
        """Say so when a skill is open only because a prerequisite's probe cannot show it is below the
        threshold (the run's page would otherwise read as if the gate were ignored)."""
        weak = [p for p in skill.prerequisites if best[p] < self.unlock_threshold]
        if weak:
            reasons[skill.key] += "; open although " + ", ".join(
                f"{p} reads {best[p]:.2f} < {self.unlock_threshold}: on {sizes[p]} items it could be up to "
                f"{upper_bound(best[p], sizes[p], self.confidence_z):.2f}"
                for p in weak
            )

    def _latest(self, history: Mapping[str, Sequence[float]]) -> dict[str, float]:
        known = {s.key for s in self.skills}
        latest: dict[str, float] = {}
        for key, accuracies in history.items():
            if key not in known:
                raise ValueError(f"history for unknown skill {key!r}")
            for accuracy in accuracies:
                _check_fraction(accuracy, f"accuracy of {key}")
            if accuracies:
                latest[key] = float(accuracies[-1])
        return latest

    def _since_unlocked(
        self, skill: Skill, history: Mapping[str, Sequence[float]], sizes: Mapping[str, int]
    ) -> list[float]:
        """The skill's accuracies from the first round it was unlocked in (a locked skill is still
        examined, but its change then is not progress of anything taught). Histories are aligned on
        their last entry, the current round."""
        rounds = max((len(v) for v in history.values()), default=0)
        own = list(history.get(skill.key, ()))

        def best_by(r: int, p: str) -> float | None:  # a prerequisite's best accuracy up to round r
            values = list(history.get(p, ()))
            seen = values[: max(0, len(values) - (rounds - 1 - r))]
            return max(seen, default=None)

        unlocked = (
            r
            for r in range(rounds)
            if all(self._reached(p, best_by(r, p), sizes) for p in skill.prerequisites)
        )
        opened = next(unlocked, rounds - 1)
        return own[max(0, len(own) - (rounds - opened)) :]

    def _active_weights(
        self,
        active: list[str],
        history: Mapping[str, Sequence[float]],
        reasons: dict[str, str],
        sizes: Mapping[str, int],
    ) -> list[float]:
        change = {
            key: abs(history[key][-1] - history[key][-2]) for key in active if len(history.get(key, ())) >= 2
        }
        noise = {
            key: progress_noise(history[key][-2], history[key][-1], sizes.get(key), self.confidence_z)
            for key in change
        }
        progress = {key: change[key] + noise[key] for key in change}
        k = len(active)
        if not any(change.values()):
            why = "first round" if not change else "no progress measured anywhere"
            for key in active:
                reasons[key] = f"{why}: uniform share {1 / k:.2f}"
            return [1.0] * k
        # Optimism for skills without two measurements: they are tried, not starved.
        best = max(progress.values())
        lp = [progress.get(key, best) for key in active]
        total = sum(lp)
        weights = [(1 - self.epsilon) * value / total + self.epsilon / k for value in lp]
        for key, value, weight in zip(active, lp, weights, strict=True):
            if key not in progress:
                source = f"no progress yet, counted as the highest {value:.2f}"
            elif noise[key]:
                source = (
                    f"learning progress up to {value:.2f} (change {change[key]:.2f} + noise {noise[key]:.2f})"
                )
            else:
                source = f"learning progress {value:.2f}"
            reasons[key] = f"{source}: share {weight:.2f} (exploration {self.epsilon / k:.2f})"
        return weights

    def _levels(
        self,
        latest: Mapping[str, float],
        difficulty: Mapping[str, int] | None,
        reasons: dict[str, str],
    ) -> dict[str, int]:
        levels: dict[str, int] = {}
        for skill in self.skills:
            top = self.max_levels[skill.key]
            previous = min(max(int((difficulty or {}).get(skill.key, 1)), 1), top)
            accuracy = latest.get(skill.key)
            if accuracy is not None and accuracy >= self.escalation_threshold and previous < top:
                levels[skill.key] = previous + 1
                reasons[skill.key] += (
                    f"; level {previous} -> {previous + 1} ({accuracy:.2f} >= {self.escalation_threshold})"
                )
            else:
                levels[skill.key] = previous
                reasons[skill.key] += f"; level {previous}" + (" (highest)" if previous == top else "")
        return levels


def allocate(keys: Sequence[str], weights: Sequence[float], n: int, rng: random.Random) -> Counter[str]:
    """``n`` items shared over ``keys`` in proportion to ``weights``, by systematic sampling.

    Each key gets ``floor(n * p)`` or one more (``p`` its normalised weight), the extra ones drawn so
    that every key's expected count is exactly ``n * p``: the same mean as ``n`` independent draws
    (``random.choices``) without their spread, which on a round of a few dozen items could leave a
    skill with a quarter of the weight without a single item.
    """
    total = float(sum(weights))
    if n <= 0 or not keys or total <= 0:
        return Counter()
    counts: Counter[str] = Counter()
    given = 0
    step, point, edge = total / n, rng.random() * total / n, 0.0
    for key, weight in zip(keys, weights, strict=True):
        edge += weight
        while point < edge and given < n:
            counts[key] += 1
            given += 1
            point += step
    if given < n:  # float rounding at the last edge
        counts[keys[-1]] += n - given
    return counts


def random_plan(
    skills: Sequence[Skill],
    budget: int,
    *,
    seed: int,
    max_levels: Mapping[str, int] | None = None,
) -> Plan:
    """The control arm: ``budget`` items drawn uniformly over all skills, ignoring prerequisites
    and progress, each skill at a uniformly random level up to its highest."""
    _check_budget(budget)
    levels = _check_levels(skills, max_levels)
    rng = random.Random(seed)
    keys = [s.key for s in skills]
    counts = Counter(rng.choices(keys, k=budget)) if keys else Counter()
    return Plan(
        items_per_skill={key: counts[key] for key in keys},
        difficulty_per_skill={key: rng.randint(1, levels[key]) for key in keys},
        reasons=dict.fromkeys(keys, "random control: uniform over all skills"),
    )

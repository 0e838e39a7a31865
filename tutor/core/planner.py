"""The curriculum for one round of a teaching run: how many items per skill, at what level.

Rules (``acc`` is a skill's latest per-round accuracy; thresholds are configurable):

1. **Prerequisites first.** A skill is *unlocked* when every prerequisite has reached the unlock
   threshold (0.5) in some round so far, its best accuracy, not its latest. As in ZPDES (Clement
   et al., 2015, "Multi-armed bandits for intelligent tutoring systems"), the zone of skills being
   taught opens before a prerequisite is mastered and only grows: a dip of a prerequisite on a
   small, noisy probe (or while a new answer format is being learned) does not lock its
   dependants again. A prerequisite never examined has not reached it. ``unlock_threshold=0.8``
   (the mastery threshold) gives the strict gate.
2. **Mastered skills get review only.** A skill with ``acc >= 0.8`` is mastered; together the
   mastered skills share ``review_share`` (10 %) of the budget, uniformly, to limit forgetting.
   When every skill is mastered, the whole budget is review.
3. **Learning progress for the rest** (Oudeyer et al.'s intrinsic motivation; Graves et al.,
   2017, "Automated Curriculum Learning"; Portelas et al., 2020, "Teacher algorithms for
   curriculum learning of deep RL"): each unlocked, unmastered skill is drawn with probability
   ``(1 - epsilon) * LP / sum(LP) + epsilon / K``, where ``LP = |acc_t - acc_(t-1)|`` and ``K``
   is the number of such skills. Progress can be a rise or a fall (forgetting is also where
   practice pays). Only the rounds since a skill was unlocked count (a locked skill is examined
   too, but its change then measures nothing taught): a skill with one measurement since has no
   LP yet and counts as the highest LP seen, so a newly unlocked skill is tried at once. With no
   LP anywhere (the first round) or all LP zero, the draw is uniform. ``epsilon`` (0.2) keeps
   some exploration of every unlocked skill.
   The budget is shared out by systematic sampling from that distribution with a seeded RNG
   (:func:`allocate`): each skill gets its expected share rounded down or up, so a skill with more
   progress gets more items, never none by bad luck, and the plan is the same for the same seed.
4. **Difficulty escalates with accuracy.** Each round a skill's level goes up by one when its
   latest accuracy is at least the escalation threshold (0.7), never above the skill's highest
   level; otherwise it stays. Levels never go down: a dip is met with more items, not easier ones.

:func:`random_plan` is the control arm: the same budget drawn uniformly over all skills,
prerequisites and progress ignored, with a random level per skill.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tutor.core.course import Course, Skill

MASTERY_THRESHOLD = 0.8
UNLOCK_THRESHOLD = 0.5
ESCALATION_THRESHOLD = 0.7
EPSILON = 0.2
REVIEW_SHARE = 0.1


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
        self.skills = tuple(skills)
        self.max_levels = _check_levels(self.skills, max_levels)
        self.mastery_threshold = mastery_threshold
        self.unlock_threshold = unlock_threshold
        self.escalation_threshold = escalation_threshold
        self.epsilon = epsilon
        self.review_share = review_share

    @classmethod
    def from_course(cls, course: Course, **options: float) -> Planner:
        """A planner over the course's skills, levels up to the highest of each skill's items."""
        levels = {s.key: course.max_difficulty(s.key) for s in course.skills}
        return cls(course.skills, max_levels=levels, **options)

    def plan(
        self,
        history: Mapping[str, Sequence[float]],
        budget: int,
        *,
        seed: int,
        difficulty: Mapping[str, int] | None = None,
    ) -> Plan:
        """The plan for the next round.

        ``history`` maps skill key to its accuracies so far, one per round, oldest first (a
        skill not examined yet may be missing). ``difficulty`` is the previous round's
        ``difficulty_per_skill`` (level 1 where missing).
        """
        _check_budget(budget)
        latest = self._latest(history)
        best = {key: max(history[key]) for key in latest}
        threshold = self.mastery_threshold
        unlock = self.unlock_threshold
        mastered = [s.key for s in self.skills if latest.get(s.key, -1.0) >= threshold]
        reasons: dict[str, str] = {}
        active: list[str] = []
        taught: dict[str, list[float]] = {}  # each active skill's accuracies since it was unlocked
        for skill in self.skills:
            if skill.key in mastered:
                reasons[skill.key] = f"mastered ({latest[skill.key]:.2f} >= {threshold}): review"
                continue
            missing = [p for p in skill.prerequisites if best.get(p, -1.0) < unlock]
            if missing:
                reasons[skill.key] = "locked: needs " + ", ".join(
                    f"{p} (best {best[p]:.2f} < {unlock})" if p in best else f"{p} (not examined)"
                    for p in missing
                )
            else:
                active.append(skill.key)
                taught[skill.key] = self._since_unlocked(skill, history)

        n_review = 0
        if mastered:
            # Everything mastered: the whole round is review. Otherwise a small share.
            n_review = budget if not active else round(budget * self.review_share)
        rng = random.Random(seed)
        counts: Counter[str] = Counter()
        if active:
            weights = self._active_weights(active, taught, reasons)
            counts.update(allocate(active, weights, budget - n_review, rng))
        if n_review:
            counts.update(allocate(mastered, [1.0] * len(mastered), n_review, rng))

        levels = self._levels(latest, difficulty, reasons)
        return Plan(
            items_per_skill={s.key: counts[s.key] for s in self.skills},
            difficulty_per_skill=levels,
            reasons=reasons,
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

    def _since_unlocked(self, skill: Skill, history: Mapping[str, Sequence[float]]) -> list[float]:
        """The skill's accuracies from the first round it was unlocked in (a locked skill is still
        examined, but its change then is not progress of anything taught). Histories are aligned on
        their last entry, the current round."""
        rounds = max((len(v) for v in history.values()), default=0)
        own = list(history.get(skill.key, ()))

        def best_by(r: int, p: str) -> float:  # a prerequisite's best accuracy up to round r
            values = list(history.get(p, ()))
            seen = values[: max(0, len(values) - (rounds - 1 - r))]
            return max(seen, default=-1.0)

        unlocked = (r for r in range(rounds)
                    if all(best_by(r, p) >= self.unlock_threshold for p in skill.prerequisites))
        opened = next(unlocked, rounds - 1)
        return own[max(0, len(own) - (rounds - opened)):]

    def _active_weights(
        self, active: list[str], history: Mapping[str, Sequence[float]], reasons: dict[str, str],
    ) -> list[float]:
        progress = {
            key: abs(history[key][-1] - history[key][-2])
            for key in active if len(history.get(key, ())) >= 2
        }
        k = len(active)
        if not progress or not any(progress.values()):
            why = "first round" if not progress else "no progress measured anywhere"
            for key in active:
                reasons[key] = f"{why}: uniform share {1 / k:.2f}"
            return [1.0] * k
        # Optimism for skills without two measurements: they are tried, not starved.
        best = max(progress.values())
        lp = [progress.get(key, best) for key in active]
        total = sum(lp)
        weights = [(1 - self.epsilon) * value / total + self.epsilon / k for value in lp]
        for key, value, weight in zip(active, lp, weights):
            source = "learning progress" if key in progress else "no progress yet, counted as the highest"
            reasons[key] = f"{source} {value:.2f}: share {weight:.2f} (exploration {self.epsilon / k:.2f})"
        return weights

    def _levels(
        self, latest: Mapping[str, float], difficulty: Mapping[str, int] | None, reasons: dict[str, str],
    ) -> dict[str, int]:
        levels: dict[str, int] = {}
        for skill in self.skills:
            top = self.max_levels[skill.key]
            previous = min(max(int((difficulty or {}).get(skill.key, 1)), 1), top)
            accuracy = latest.get(skill.key)
            if accuracy is not None and accuracy >= self.escalation_threshold and previous < top:
                levels[skill.key] = previous + 1
                reasons[skill.key] += (f"; level {previous} -> {previous + 1} "
                                       f"({accuracy:.2f} >= {self.escalation_threshold})")
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
    skills: Sequence[Skill], budget: int, *, seed: int, max_levels: Mapping[str, int] | None = None,
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

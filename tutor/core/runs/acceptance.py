"""Whether a round's training is kept: it must help on words it never saw and harm nothing kept.

A round's new adapter is accepted only when, on the probe items asked in held-out phrasings,

1. it **gains over the base student**: more of them answered right than the base model did (before
   the first round, the adapter before the round *is* the base, so there this is "gains over the
   round before"); and
2. it has **not fallen behind the adapter it replaces beyond noise**: of the same items, those it
   lost (right before, wrong now) outnumber those it gained by more than ``z`` times the square root
   of both (a paired, McNemar-style test on the same items);

and (3) no keep skill has dropped below the base model's accuracy beyond its noise: the Wilson upper
bound (``z``) of its accuracy now is below the base model's accuracy on the same items; and (4) the
*learned* skills (after the first round: the taught skills the adapter before answers at least as
well as the keep threshold) have not fallen behind the adapter before beyond noise, each on its own:
rule 2's paired test on the skill's probe items (both phrasings; the caller picks the items). Rule 2
nets gains against losses over all skills; rule 4 keeps a round's gains on new skills from paying
for what the student had learned. The
decision reads the probe, never the exam, so the exam stays a clean report. A rejected try is rolled
back and retried with more replay and a lower learning rate (:func:`retry_settings`).

Rule 2 is not "a strict gain over the round before": on a probe of a few dozen items one item
would decide, against a bar that was itself accepted on a high reading of the same items. The
measurements behind this: docs/decisions.md, "A round gains over the base and may hold level".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tutor.core.runs.planner import upper_bound


def _mean(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class Judgement:
    """The decision on one try, with the figures it was made on (shown on the run page)."""

    accepted: bool
    reason: str
    held_out_before: float | None
    held_out_after: float | None
    keep: dict[str, dict[str, float]] = field(default_factory=dict)  # skill -> base, now, upper, n
    held_out_base: float | None = None
    learned: dict[str, dict[str, float]] = field(default_factory=dict)  # skill -> before, now, n


def judge(
    held_out_before: Sequence[bool],
    held_out_after: Sequence[bool],
    keep_base: Mapping[str, Sequence[bool]],
    keep_now: Mapping[str, Sequence[bool]],
    *,
    z: float = 1.96,
    held_out_base: Sequence[bool] | None = None,
    learned_before: Mapping[str, Sequence[bool]] | None = None,
    learned_now: Mapping[str, Sequence[bool]] | None = None,
) -> Judgement:
    """Judge a try from per-item correctness (the same items before, after and, where given, for the
    base model, in the same order). Without ``held_out_base`` the adapter before the round is the base.
    ``learned_before``/``learned_now``: rule 4's skills, their probe items answered by the adapter
    before and by this try (the caller picks the skills)."""
    if len(held_out_before) != len(held_out_after):
        raise ValueError("held-out probe answers before and after must be of the same items")
    if held_out_base is not None and len(held_out_base) != len(held_out_after):
        raise ValueError("held-out probe answers of the base must be of the same items")
    before = _mean(held_out_before) if held_out_before else None
    after = _mean(held_out_after) if held_out_after else None
    base = _mean(held_out_base) if held_out_base else None
    keep: dict[str, dict[str, float]] = {}
    dropped = []
    for skill, base_items in keep_base.items():
        now = keep_now.get(skill, ())
        if not base_items or len(now) != len(base_items):
            continue
        base_acc, now_acc = _mean(base_items), _mean(now)
        upper = upper_bound(now_acc, len(now), z)
        keep[skill] = {
            "base": round(base_acc, 4),
            "now": round(now_acc, 4),
            "upper": round(upper, 4),
            "n": len(now),
        }
        if upper < base_acc:
            dropped.append(f"{skill} {base_acc:.2f} -> {now_acc:.2f}")
    gain_ok, gain = _held_out_verdict(held_out_before, held_out_after, before, after, base, z)
    learned, forgot = _learned_verdict(learned_before or {}, learned_now or {}, z)
    if dropped:
        reason = f"a keep skill dropped beyond noise ({'; '.join(dropped)}); {gain}"
    elif forgot:
        reason = f"{forgot}; {gain}"
    elif not gain_ok:
        reason = gain
    else:
        reason = f"{gain}; no keep skill dropped beyond noise"
        if learned:
            reason += ", no learned skill fell behind"
    return Judgement(
        not dropped and not forgot and gain_ok,
        reason,
        before,
        after,
        keep,
        before if base is None else base,
        learned,
    )


def _learned_verdict(
    before: Mapping[str, Sequence[bool]], now: Mapping[str, Sequence[bool]], z: float
) -> tuple[dict[str, dict[str, float]], str | None]:
    """Rule 4: (per-skill figures, why the try fails or None). Each learned skill on its own, like a
    keep skill: pooled, one skill undone on one wording is lost among the others' churn (seen: a
    round read 20 one-digit-sum probe items' "If you put 6 and 1 together" as 6 × 1, 4 of them lost, while
    three-digit sums lost 6 and won 6)."""
    figures: dict[str, dict[str, float]] = {}
    fell = []
    for skill, was in before.items():
        is_ = now.get(skill, ())
        if not was or len(is_) != len(was):
            continue
        figures[skill] = {"before": round(_mean(was), 4), "now": round(_mean(is_), 4), "n": len(was)}
        lost, won, behind = _paired(was, is_, z)
        if behind:
            fell.append(f"{skill} {_mean(was):.2f} -> {_mean(is_):.2f}: {lost} probe items lost, {won} won")
    if fell:
        return figures, f"a learned skill fell behind the adapter before beyond noise ({'; '.join(fell)})"
    return figures, None


def _paired(before: Sequence[bool], after: Sequence[bool], z: float) -> tuple[int, int, bool]:
    """(items lost, items won, fell behind beyond noise) on the same items answered twice: lost minus
    won above ``z`` times the square root of both (rules 2 and 4)."""
    lost = sum(was and not now for was, now in zip(before, after, strict=True))
    won = sum(now and not was for was, now in zip(before, after, strict=True))
    return lost, won, lost - won > z * math.sqrt(lost + won)


def _held_out_verdict(
    before_items: Sequence[bool],
    after_items: Sequence[bool],
    before: float | None,
    after: float | None,
    base: float | None,
    z: float,
) -> tuple[bool, str]:
    """Rules 1 and 2 of the module docstring on the held-out probe: (passes, what it read). ``base``
    None: the adapter before the round is the base (the first round)."""
    if before is None or after is None:
        return True, "no held-out probe items to judge by"
    figures = f"held-out probe {before:.2f} -> {after:.2f}"
    if base is None:
        if after <= before:
            return False, f"no gain on held-out phrasings ({figures})"
        return True, figures
    figures += f", base {base:.2f}"
    if after <= base:
        return False, f"no gain over the base on held-out phrasings ({figures})"
    lost, won, behind = _paired(before_items, after_items, z)
    if behind:
        return (
            False,
            f"fell behind the adapter it replaces beyond noise ({figures}: {lost} items lost, {won} won)",
        )
    if after < before:
        return True, f"{figures}: within the noise of the adapter it replaces ({lost} items lost, {won} won)"
    return True, figures


def retry_settings(attempt: int, keep_share: float) -> tuple[float, float]:
    """(keep share, learning-rate scale) for try ``attempt`` (0 is the first): each retry replays
    more of the student's own right answers and halves the learning rate."""
    share = min(0.6, keep_share + 0.15 * attempt) if keep_share > 0 or attempt else keep_share
    return round(share, 4), 0.5**attempt

"""Whether a round's training is kept: it must help on words it never saw and harm nothing kept.

A round's new adapter is accepted only when (1) the probe items asked in held-out phrasings are
answered better than before the round, and (2) no keep skill has dropped below the base model's
accuracy beyond its noise: the Wilson upper bound (``z``) of its accuracy now is below the base
model's accuracy on the same items. The decision reads the probe, never the exam, so the exam
stays a clean report. A rejected try is rolled back and retried with more replay and a lower
learning rate (:func:`retry_settings`).
"""

from __future__ import annotations

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


def judge(
    held_out_before: Sequence[bool],
    held_out_after: Sequence[bool],
    keep_base: Mapping[str, Sequence[bool]],
    keep_now: Mapping[str, Sequence[bool]],
    *,
    z: float = 1.96,
) -> Judgement:
    """Judge a try from per-item correctness (the same items before and after, in the same order)."""
    if len(held_out_before) != len(held_out_after):
        raise ValueError("held-out probe answers before and after must be of the same items")
    before = _mean(held_out_before) if held_out_before else None
    after = _mean(held_out_after) if held_out_after else None
    keep: dict[str, dict[str, float]] = {}
    dropped = []
    for skill, base in keep_base.items():
        now = keep_now.get(skill, ())
        if not base or len(now) != len(base):
            continue
        base_acc, now_acc = _mean(base), _mean(now)
        upper = upper_bound(now_acc, len(now), z)
        keep[skill] = {
            "base": round(base_acc, 4),
            "now": round(now_acc, 4),
            "upper": round(upper, 4),
            "n": len(now),
        }
        if upper < base_acc:
            dropped.append(f"{skill} {base_acc:.2f} -> {now_acc:.2f}")
    if before is None or after is None:
        gain_ok, gain = True, "no held-out probe items to judge by"
    else:
        gain_ok = after > before
        gain = f"held-out probe {before:.2f} -> {after:.2f}"
    if dropped:
        reason = f"a keep skill dropped beyond noise ({'; '.join(dropped)}); {gain}"
    elif not gain_ok:
        reason = f"no gain on held-out phrasings ({gain})"
    else:
        reason = f"{gain}; no keep skill dropped beyond noise"
    return Judgement(not dropped and gain_ok, reason, before, after, keep)


def retry_settings(attempt: int, keep_share: float) -> tuple[float, float]:
    """(keep share, learning-rate scale) for try ``attempt`` (0 is the first): each retry replays
    more of the student's own right answers and halves the learning rate."""
    share = min(0.6, keep_share + 0.15 * attempt) if keep_share > 0 or attempt else keep_share
    return round(share, 4), 0.5**attempt

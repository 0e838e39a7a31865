"""The acceptance rule: a round's adapter stays only when the held-out probe gains and nothing kept drops."""

from __future__ import annotations

from tutor.core.runs.acceptance import judge, retry_settings

BASE_KEEP = {"compare": [True] * 14 + [False] * 6}  # 0.70 on 20 items


def test_it_accepts_a_gain_on_held_out_phrasings_that_keeps_everything():
    verdict = judge([False] * 10, [True] * 4 + [False] * 6, BASE_KEEP, {"compare": [True] * 13 + [False] * 7})
    assert verdict.accepted, verdict.reason
    assert verdict.held_out_before == 0.0 and verdict.held_out_after == 0.4
    assert verdict.keep["compare"]["now"] == 0.65


def test_it_rejects_no_gain_on_held_out_phrasings():
    verdict = judge([True, False], [True, False], BASE_KEEP, BASE_KEEP)
    assert not verdict.accepted and "no gain on held-out phrasings" in verdict.reason


def test_it_rejects_a_keep_skill_that_drops_beyond_its_noise():
    # 0.70 -> 0.40 on 20 items: the Wilson upper bound of 0.40 (0.61) is below 0.70.
    dropped = {"compare": [True] * 8 + [False] * 12}
    verdict = judge([False] * 10, [True] * 10, BASE_KEEP, dropped)
    assert not verdict.accepted and "compare 0.70 -> 0.40" in verdict.reason
    # 0.70 -> 0.55 is within the noise of 20 items.
    within = {"compare": [True] * 11 + [False] * 9}
    assert judge([False] * 10, [True] * 10, BASE_KEEP, within).accepted


def test_each_retry_replays_more_and_learns_more_gently():
    assert retry_settings(0, 0.2) == (0.2, 1.0)
    assert retry_settings(1, 0.2) == (0.35, 0.5)
    assert retry_settings(3, 0.2) == (0.6, 0.125)

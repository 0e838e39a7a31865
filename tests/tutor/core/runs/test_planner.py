"""The round planner: prerequisites, learning progress, exploration, escalation, and the control."""

from __future__ import annotations

import random

import pytest

from tutor.core.courses.course import Skill
from tutor.core.courses.packs import arithmetic_pack
from tutor.core.runs.planner import Plan, Planner, allocate, progress_noise, random_plan, upper_bound

SKILLS = (
    Skill("a", "A"),
    Skill("b", "B", prerequisites=("a",)),
    Skill("c", "C", prerequisites=("a",)),
    Skill("d", "D", prerequisites=("b", "c")),
)
LEVELS = {"a": 3, "b": 2, "c": 2, "d": 1}


def planner(**options) -> Planner:
    return Planner(SKILLS, max_levels=LEVELS, **options)


def test_it_teaches_only_unlocked_skills_on_the_first_round():
    plan = planner().plan({}, 20, seed=0)
    assert plan.items_per_skill == {"a": 20, "b": 0, "c": 0, "d": 0}
    assert plan.reasons["b"].startswith("locked: needs a (not examined)")
    assert plan.reasons["a"].startswith("first round: uniform")
    assert plan.difficulty_per_skill == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_it_unlocks_a_skill_once_every_prerequisite_reaches_the_unlock_threshold():
    history = {"a": [0.9], "b": [0.85], "c": [0.3], "d": [0.0]}
    plan = planner(review_share=0.0).plan(history, 30, seed=1)
    assert plan.items_per_skill["d"] == 0
    assert "locked: needs c (best 0.30 < 0.5)" in plan.reasons["d"]
    assert plan.items_per_skill["c"] == 30  # a and b are mastered, c is the only active skill
    # c is far from mastered (0.5 < 0.8) but has reached the unlock threshold: d opens beside it.
    plan = planner(review_share=0.0).plan(history | {"c": [0.3, 0.5]}, 30, seed=1)
    assert plan.items_per_skill["d"] > 0 and plan.items_per_skill["c"] > 0


def test_it_keeps_a_skill_unlocked_when_a_prerequisite_dips():
    # a reached 0.5 once, then fell to 0.0 (a noisy probe, a new answer format): b and c stay open.
    plan = planner().plan({"a": [0.5, 0.0]}, 30, seed=0)
    assert plan.items_per_skill["b"] > 0 and plan.items_per_skill["c"] > 0
    assert plan.items_per_skill["d"] == 0
    assert plan.reasons["d"].startswith("locked: needs b (not examined), c (not examined)")


def test_it_gates_on_mastery_with_a_strict_unlock_threshold():
    strict = planner(unlock_threshold=0.8)
    assert strict.plan({"a": [0.5]}, 20, seed=0).items_per_skill == {"a": 20, "b": 0, "c": 0, "d": 0}
    assert "locked: needs a (best 0.50 < 0.8)" in strict.plan({"a": [0.5]}, 20, seed=0).reasons["b"]
    assert strict.plan({"a": [0.3, 0.85]}, 20, seed=0).items_per_skill["b"] > 0


def test_it_gives_mastered_skills_a_small_review_share():
    history = {"a": [0.95], "b": [0.4], "c": [0.3]}
    plan = planner(review_share=0.1).plan(history, 50, seed=3)
    assert plan.items_per_skill["a"] == 5
    assert plan.items_per_skill["b"] + plan.items_per_skill["c"] == 45
    assert plan.reasons["a"].startswith("mastered (0.95 >= 0.8): review")


def test_it_reviews_everything_when_all_skills_are_mastered():
    history = {k: [0.7, 0.9] for k in LEVELS}
    plan = planner().plan(history, 40, seed=0)
    assert plan.total == 40
    assert all(n > 0 for n in plan.items_per_skill.values())
    assert all("mastered" in reason for reason in plan.reasons.values())


def test_it_plans_nothing_for_a_zero_budget():
    plan = planner().plan({"a": [0.2, 0.75]}, 0, seed=0)
    assert plan.total == 0
    assert plan.difficulty_per_skill["a"] == 2  # levels are still planned


def test_it_gives_more_items_to_skills_with_more_learning_progress():
    # b moved 0.4, c moved 0.05: b should get most of the budget on average.
    history = {"a": [0.9, 0.9], "b": [0.1, 0.5], "c": [0.3, 0.35]}
    p = planner(epsilon=0.2, review_share=0.0)
    totals = {"b": 0, "c": 0}
    for seed in range(200):
        plan = p.plan(history, 20, seed=seed)
        totals["b"] += plan.items_per_skill["b"]
        totals["c"] += plan.items_per_skill["c"]
    share_b = totals["b"] / (totals["b"] + totals["c"])
    # Expected: 0.8 * 0.4/0.45 + 0.1 = 0.811
    assert share_b == pytest.approx(0.811, abs=0.03)


def test_it_counts_a_fall_in_accuracy_as_progress():
    history = {"a": [0.9, 0.9], "b": [0.7, 0.3], "c": [0.3, 0.3]}
    plan = planner(epsilon=0.0, review_share=0.0).plan(history, 20, seed=0)
    assert plan.items_per_skill == {"a": 0, "b": 20, "c": 0, "d": 0}


def test_it_keeps_exploring_skills_without_progress():
    history = {"a": [0.9, 0.9], "b": [0.1, 0.5], "c": [0.3, 0.3]}
    p = planner(epsilon=0.2, review_share=0.0)
    c_items = sum(p.plan(history, 50, seed=seed).items_per_skill["c"] for seed in range(100))
    assert c_items / (50 * 100) == pytest.approx(0.1, abs=0.02)  # epsilon / K = 0.2 / 2
    assert p.plan(history, 50, seed=0).reasons["c"].startswith("learning progress 0.00")


def test_it_tries_a_newly_unlocked_skill_at_once():
    # c has one measurement: no progress yet, so it counts as the highest progress seen.
    history = {"a": [0.7, 0.9], "b": [0.1, 0.5], "c": [0.2]}
    plan = planner(epsilon=0.0, review_share=0.0).plan(history, 40, seed=0)
    assert plan.items_per_skill["c"] > 10
    assert "no progress yet" in plan.reasons["c"]


def test_it_counts_progress_only_from_the_round_a_skill_was_unlocked():
    # b and c were examined while locked (a at 0.3): their flat 0.0 -> 0.0 is not progress of
    # anything taught. a reached 0.6 in round 1, so b and c are new and count as the highest LP.
    p = planner(epsilon=0.0, review_share=0.0)
    plan = p.plan({"a": [0.3, 0.6], "b": [0.0, 0.0], "c": [0.0, 0.0]}, 30, seed=0)
    assert plan.items_per_skill == {"a": 10, "b": 10, "c": 10, "d": 0}
    assert "no progress yet" in plan.reasons["b"] and "no progress yet" in plan.reasons["c"]
    # Once taught for a round without moving, the same flat line is measured progress: zero.
    plan = p.plan({"a": [0.3, 0.6, 0.7], "b": [0.0, 0.0, 0.0], "c": [0.0, 0.0, 0.4]}, 30, seed=0)
    assert plan.items_per_skill["b"] == 0 and plan.reasons["b"].startswith("learning progress 0.00")
    # Open from the first round: every measurement counts.
    plan = p.plan({"a": [0.6, 0.6], "b": [0.0, 0.0], "c": [0.0, 0.3]}, 30, seed=0)
    assert plan.items_per_skill["b"] == 0


def test_it_samples_uniformly_when_no_skill_made_progress():
    history = {"a": [0.9, 0.9], "b": [0.4, 0.4], "c": [0.3, 0.3]}
    plan = planner(review_share=0.0).plan(history, 40, seed=0)
    assert plan.reasons["b"].startswith("no progress measured anywhere: uniform")


def test_it_escalates_difficulty_one_level_at_a_time_up_to_the_maximum():
    p = planner()
    levels = None
    seen = []
    for accuracy in (0.5, 0.72, 0.75, 0.9, 0.95):
        levels = p.plan({"a": [accuracy]}, 10, seed=0, difficulty=levels).difficulty_per_skill
        seen.append(levels["a"])
    assert seen == [1, 2, 3, 3, 3]  # a's highest level is 3
    plan = p.plan({"a": [0.95]}, 10, seed=0, difficulty={"a": 3})
    assert "(highest)" in plan.reasons["a"]


def test_it_never_lowers_difficulty_when_accuracy_drops():
    plan = planner().plan({"a": [0.9, 0.3]}, 10, seed=0, difficulty={"a": 2})
    assert plan.difficulty_per_skill["a"] == 2


def test_it_is_deterministic_for_a_seed():
    history = {"a": [0.9, 0.9], "b": [0.1, 0.5], "c": [0.3, 0.35]}
    p = planner()
    assert p.plan(history, 37, seed=4) == p.plan(history, 37, seed=4)
    assert any(p.plan(history, 37, seed=4) != p.plan(history, 37, seed=s) for s in range(5, 10))


def test_it_spends_exactly_the_budget():
    history = {"a": [0.9, 0.95], "b": [0.1, 0.5], "c": [0.3, 0.35]}
    for budget in (1, 7, 64):
        assert planner().plan(history, budget, seed=0).total == budget


def test_it_reads_levels_from_a_course():
    p = Planner.from_course(arithmetic_pack(per_skill_per_split=4))
    assert p.max_levels["add_3d"] == 4
    plan = p.plan({}, 10, seed=0)
    assert plan.items_per_skill["add_1d"] == 10


def test_it_makes_a_random_control_plan_over_all_skills():
    plan = random_plan(SKILLS, 400, seed=0, max_levels=LEVELS)
    assert plan.total == 400
    assert all(n > 50 for n in plan.items_per_skill.values())  # d is not locked in the control
    assert all(1 <= plan.difficulty_per_skill[k] <= LEVELS[k] for k in LEVELS)
    assert set(plan.reasons.values()) == {"random control: uniform over all skills"}
    assert plan == random_plan(SKILLS, 400, seed=0, max_levels=LEVELS)
    assert random_plan(SKILLS, 0, seed=0).total == 0


def test_it_rejects_bad_inputs():
    with pytest.raises(ValueError):
        planner().plan({}, -1, seed=0)
    with pytest.raises(ValueError, match="unknown skill"):
        planner().plan({"zzz": [0.5]}, 5, seed=0)
    with pytest.raises(ValueError, match="accuracy of a"):
        planner().plan({"a": [1.5]}, 5, seed=0)
    with pytest.raises(ValueError, match="unlock_threshold"):
        planner(unlock_threshold=1.2)
    with pytest.raises(ValueError, match="epsilon"):
        planner(epsilon=1.5)
    with pytest.raises(ValueError, match="unknown prerequisite"):
        Planner((Skill("x", "X", prerequisites=("y",)),))


def test_it_returns_a_plan_that_covers_every_skill():
    plan = planner().plan({"a": [0.5]}, 5, seed=0)
    assert isinstance(plan, Plan)
    assert set(plan.items_per_skill) == set(plan.difficulty_per_skill) == set(plan.reasons) == set(LEVELS)


def test_it_shares_the_budget_by_expected_counts_never_starving_a_skill():
    # Independent draws of 24 items over 4 equal skills leave one without any in ~1 seed in 250;
    # systematic sampling gives each exactly 6, and floor or ceil of its share in general.
    p = planner(review_share=0.0)
    history = {"a": [0.9, 0.9], "b": [0.1, 0.5], "c": [0.3, 0.35]}
    for seed in range(300):
        assert planner().plan({}, 24, seed=seed).items_per_skill["a"] == 24
        plan = p.plan(history, 20, seed=seed)
        # weights: b 0.8 * 0.4/0.45 + 0.1 = 0.811, c 0.189 -> 16.2 and 3.8 items
        assert plan.items_per_skill["b"] in (16, 17) and plan.items_per_skill["c"] in (3, 4)
    rng = random.Random(0)
    for n in (1, 5, 24, 97):
        for _ in range(50):
            weights = [rng.random() for _ in range(4)]
            counts = allocate("wxyz", weights, n, rng)
            assert sum(counts.values()) == n
            for key, w in zip("wxyz", weights, strict=True):
                assert abs(counts[key] - n * w / sum(weights)) < 1
    assert allocate("ab", [0.0, 0.0], 5, rng) == {} and allocate("ab", [1.0, 1.0], 0, rng) == {}


def test_the_wilson_upper_bound_matches_hand_computed_values():
    # 95 % Wilson score interval, upper end: worked by hand from the formula.
    assert upper_bound(0.25, 8, 1.96) == pytest.approx(0.591, abs=0.002)
    assert upper_bound(0.0, 8, 1.96) == pytest.approx(0.324, abs=0.002)
    assert upper_bound(0.0, 4, 1.96) == pytest.approx(0.490, abs=0.002)
    assert upper_bound(0.25, 20, 1.96) == pytest.approx(0.469, abs=0.002)
    assert upper_bound(1.0, 8, 1.96) == 1.0
    assert upper_bound(0.25, None, 1.96) == upper_bound(0.25, 8, 0.0) == 0.25


def test_the_gate_closes_only_when_the_probe_shows_the_prerequisite_below_the_threshold():
    p = planner()
    # 2 of 8 right: the probe cannot tell 0.25 from 0.5, so b and c are taught beside a.
    plan = p.plan({"a": [0.25]}, 24, seed=0, probe_sizes={"a": 8})
    assert plan.items_per_skill == {"a": 8, "b": 8, "c": 8, "d": 0}
    assert "open although a reads 0.25 < 0.5: on 8 items it could be up to 0.59" in plan.reasons["b"]
    # 0 of 8, or 5 of 20, is below 0.5 beyond the noise: the gate holds, and says why.
    for accuracy, n, bound in ((0.0, 8, "0.32"), (0.25, 20, "0.47")):
        plan = p.plan({"a": [accuracy]}, 24, seed=0, probe_sizes={"a": n})
        assert plan.items_per_skill == {"a": 24, "b": 0, "c": 0, "d": 0}
        why = f"locked: needs a (best {accuracy:.2f} of {n} items, at most {bound} < 0.5)"
        assert why in plan.reasons["b"]
    # Without probe sizes (or with confidence_z=0) accuracies are exact: 0.25 < 0.5 locks.
    assert p.plan({"a": [0.25]}, 24, seed=0).items_per_skill["b"] == 0
    exact = planner(confidence_z=0).plan({"a": [0.25]}, 24, seed=0, probe_sizes={"a": 8})
    assert exact.items_per_skill["b"] == 0
    # A skill whose prerequisites are at the threshold for certain has nothing to explain.
    assert "open although" not in p.plan({"a": [0.75]}, 24, seed=0, probe_sizes={"a": 8}).reasons["b"]


def test_learning_progress_is_read_with_the_probe_noise_as_an_upper_bound():
    p = planner(epsilon=0.0, review_share=0.0)
    history = {"a": [0.5, 0.5], "b": [0.25, 0.375], "c": [0.25, 0.25]}
    # Exact accuracies: b's one item of change is all the progress there is, so b gets everything.
    assert p.plan(history, 24, seed=0).items_per_skill == {"a": 0, "b": 24, "c": 0, "d": 0}
    # On 8-item probes every skill's bound is mostly noise: the shares stay near uniform (d, open
    # because neither b's 3 of 8 nor c's 2 of 8 shows them below 0.5, counts as the highest).
    sizes = dict.fromkeys("abcd", 8)
    plan = p.plan(history, 24, seed=0, probe_sizes=sizes)
    assert all(5 <= plan.items_per_skill[k] <= 7 for k in "abcd"), plan.items_per_skill
    noise = progress_noise(0.25, 0.375, 8, 1.96)
    why = f"learning progress up to {0.125 + noise:.2f} (change 0.12 + noise {noise:.2f})"
    assert why in plan.reasons["b"]
    # A large change stands out against the noise: 1 of 8 -> 6 of 8 gets about twice the share of a
    # skill that did not move (the old rule, on the change alone, gave it everything but exploration).
    plan = p.plan(history | {"b": [0.125, 0.75]}, 24, seed=0, probe_sizes=sizes)
    assert plan.items_per_skill["b"] >= 1.7 * plan.items_per_skill["c"]
    assert plan.items_per_skill["c"] >= 3
    # The larger the probe, the closer the bound to the change itself.
    assert (
        progress_noise(0.25, 0.5, 200, 1.96)
        < progress_noise(0.25, 0.5, 20, 1.96)
        < progress_noise(0.25, 0.5, 8, 1.96)
    )
    assert progress_noise(0.0, 0.0, 8, 1.96) > 0  # 0 of 8 is not an exact zero
    assert progress_noise(0.2, 0.4, None, 1.96) == 0.0


def test_a_skill_opened_on_uncertain_evidence_counts_progress_from_that_round():
    # a read 0.25 of 8 in both rounds: b was open (and taught) from round 0, so its flat 0 -> 0 is
    # measured progress (none), not "no progress yet".
    p = planner(epsilon=0.0, review_share=0.0)
    plan = p.plan(
        {"a": [0.25, 0.25], "b": [0.0, 0.0], "c": [0.0, 0.0]}, 24, seed=0, probe_sizes=dict.fromkeys("abc", 8)
    )
    assert all("no progress yet" not in plan.reasons[k] for k in "bc")
    assert plan.reasons["b"].startswith("no progress measured anywhere: uniform")
    assert plan.items_per_skill == {"a": 8, "b": 8, "c": 8, "d": 0}


def test_it_rejects_bad_probe_sizes_and_confidence():
    with pytest.raises(ValueError, match="confidence_z"):
        planner(confidence_z=-1)
    with pytest.raises(ValueError, match="confidence_z"):
        planner(confidence_z=float("nan"))
    with pytest.raises(ValueError, match="probe size of a"):
        planner().plan({"a": [0.5]}, 5, seed=0, probe_sizes={"a": 0})
    with pytest.raises(ValueError, match="unknown skill"):
        planner().plan({"a": [0.5]}, 5, seed=0, probe_sizes={"zzz": 8})

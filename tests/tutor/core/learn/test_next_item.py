"""Choosing a human learner's next skill: reviews, new unlocked skills, the weakest one."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from tutor.core.learn.next_item import NextChoice, choose_next_skill

# counting -> addition -> {subtraction, multiplication}; multiplication -> division
COURSE = [
    ("counting", []),
    ("addition", ["counting"]),
    ("subtraction", ["addition"]),
    ("multiplication", ["addition"]),
    ("division", ["multiplication"]),
]
ALL_MASTERED = {key: 0.97 for key, _ in COURSE}


def choose(mastery, reviews_due=(), seed=0, **kwargs):
    return choose_next_skill(COURSE, mastery, list(reviews_due), rng=random.Random(seed), **kwargs)


def test_it_starts_a_new_learner_on_the_skill_without_prerequisites():
    assert choose({}) == NextChoice("counting", "new")


def test_it_offers_only_skills_whose_prerequisites_are_mastered():
    # addition is at 0.9 (< 0.95), so subtraction and multiplication stay locked.
    assert choose({"counting": 0.99, "addition": 0.9}) == NextChoice("addition", "weakest")
    assert choose({"counting": 0.99, "addition": 0.96}) == NextChoice("subtraction", "new")


def test_it_prefers_a_new_unlocked_skill_over_the_weakest_started_one():
    mastery = {"counting": 0.99, "addition": 0.99, "subtraction": 0.4}
    assert choose(mastery) == NextChoice("multiplication", "new")


def test_it_picks_the_weakest_unlocked_skill_when_all_are_started():
    mastery = {"counting": 0.99, "addition": 0.99, "subtraction": 0.7, "multiplication": 0.5}
    assert choose(mastery) == NextChoice("multiplication", "weakest")
    # division stays locked however weak it is.
    assert choose(mastery | {"division": 0.1}) == NextChoice("multiplication", "weakest")


def test_it_respects_a_custom_threshold():
    assert choose({"counting": 0.85}, threshold=0.8) == NextChoice("addition", "new")


def test_it_takes_a_due_review_about_review_share_of_the_time():
    mastery = {"counting": 0.99, "addition": 0.5}
    picks = [choose(mastery, ["counting"], seed=seed).reason for seed in range(1000)]
    assert set(picks) == {"review", "weakest"}
    assert 0.25 < picks.count("review") / len(picks) < 0.35
    assert choose(mastery, ["counting"], review_share=0.0).reason == "weakest"
    assert choose(mastery, ["counting"], review_share=1.0) == NextChoice("counting", "review")


def test_it_takes_the_most_overdue_review_when_nothing_else_is_left():
    choice = choose(ALL_MASTERED, ["division", "counting"], review_share=0.0)
    assert choice == NextChoice("division", "review")


def test_it_ignores_due_reviews_of_skills_outside_the_course():
    assert choose({}, ["spelling"], review_share=1.0) == NextChoice("counting", "new")


def test_it_reviews_the_lowest_mastered_skill_when_everything_is_mastered_and_nothing_is_due():
    assert choose(ALL_MASTERED | {"subtraction": 0.96}) == NextChoice("subtraction", "review")


def test_it_reviews_the_skill_mastered_longest_ago_when_dates_are_given():
    mastered_at = {key: datetime(2025, 1, day, tzinfo=UTC) for day, (key, _) in enumerate(COURSE, 1)}
    mastered_at["counting"] = datetime(2025, 2, 1, tzinfo=UTC)
    assert choose(ALL_MASTERED, mastered_at=mastered_at) == NextChoice("addition", "review")
    del mastered_at["division"]  # no date: counts as longest ago
    assert choose(ALL_MASTERED, mastered_at=mastered_at) == NextChoice("division", "review")


def test_it_is_deterministic_with_a_seeded_rng():
    mastery = {"counting": 0.99, "addition": 0.5}
    first = [choose(mastery, ["counting"], seed=seed) for seed in range(50)]
    assert first == [choose(mastery, ["counting"], seed=seed) for seed in range(50)]


@pytest.mark.parametrize(
    "skills, message",
    [
        ([], "at least one skill"),
        ([("a", []), ("a", [])], "twice"),
        ([("a", ["z"])], "unknown prerequisites: z"),
        ([("a", ["c"]), ("b", ["a"]), ("c", ["b"])], "cycle: a -> c -> b -> a"),
    ],
)
def test_it_rejects_a_broken_skill_graph(skills, message):
    with pytest.raises(ValueError, match=message):
        choose_next_skill(skills, {}, [], rng=random.Random(0))


@pytest.mark.parametrize("kwargs", [{"review_share": 1.5}, {"threshold": 0.0}])
def test_it_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        choose({}, **kwargs)

"""Spaced reviews of mastered skills through the fsrs package, at fixed times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tutor.core.learn.review import (
    NaiveDatetimeError,
    ReviewState,
    due,
    new_review_state,
    record_review,
    retrievability,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_it_makes_a_new_state_due_at_once():
    state = new_review_state(NOW)
    assert state.due == NOW
    assert state.phase == "learning" and state.stability is None and state.reviews == 0
    assert due({"fractions": state}, NOW) == ["fractions"]


def test_it_schedules_the_next_review_in_the_future_after_a_good_review():
    state = record_review(new_review_state(NOW), True, NOW)
    assert state.due > NOW + timedelta(days=1)
    assert state.phase == "review" and state.last_review == NOW and state.reviews == 1
    assert due({"fractions": state}, NOW) == []
    assert due({"fractions": state}, state.due) == ["fractions"]


def test_it_brings_the_review_sooner_after_again_than_after_good():
    start = new_review_state(NOW)
    good, again = record_review(start, True, NOW), record_review(start, False, NOW)
    assert NOW < again.due < good.due
    assert again.lapses == 1 and good.lapses == 0
    # Also for a skill already in review, reviewed on its due date: a lapse comes back within the hour.
    later = good.due
    lapse, success = record_review(good, False, later), record_review(good, True, later)
    assert lapse.due < later + timedelta(hours=1) < success.due


def test_it_spaces_reviews_further_after_a_fast_correct_answer():
    start = new_review_state(NOW)
    assert record_review(start, True, NOW, fast=True).due > record_review(start, True, NOW).due


def test_it_grows_the_interval_with_successive_good_reviews():
    first = record_review(new_review_state(NOW), True, NOW)
    second = record_review(first, True, first.due)
    assert second.due - first.due > first.due - NOW
    assert retrievability(first, first.due) == pytest.approx(0.9, abs=0.03)


def test_it_lists_overdue_skills_most_overdue_first():
    states = {
        "decimals": ReviewState(due=NOW - timedelta(days=1)),
        "fractions": ReviewState(due=NOW - timedelta(days=5)),
        "percent": ReviewState(due=NOW + timedelta(days=2)),
        "ratios": ReviewState(due=NOW),
        "algebra": ReviewState(due=NOW - timedelta(days=1)),
    }
    assert due(states, NOW) == ["fractions", "algebra", "decimals", "ratios"]


def test_it_round_trips_through_json():
    state = record_review(record_review(new_review_state(NOW), True, NOW), False, NOW + timedelta(days=2))
    data = json.loads(json.dumps(state.to_dict()))
    assert ReviewState.from_dict(data) == state
    assert data["due"].endswith("+00:00")
    fresh = new_review_state(NOW)
    assert ReviewState.from_dict(json.loads(json.dumps(fresh.to_dict()))) == fresh


def test_it_rejects_unknown_keys_from_json():
    data = new_review_state(NOW).to_dict() | {"ease": 2.5}
    with pytest.raises(ValueError, match="ease"):
        ReviewState.from_dict(data)


def test_it_rejects_naive_datetimes_with_a_clear_error():
    naive = datetime(2025, 1, 1, 12, 0)
    with pytest.raises(NaiveDatetimeError, match="timezone-aware"):
        new_review_state(naive)
    with pytest.raises(NaiveDatetimeError, match="now must be timezone-aware"):
        record_review(new_review_state(NOW), True, naive)
    with pytest.raises(NaiveDatetimeError):
        due({}, naive)
    with pytest.raises(NaiveDatetimeError, match="due"):
        ReviewState.from_dict({"due": "2025-01-01T12:00:00"})


def test_it_converts_other_timezones_to_utc():
    paris = NOW.astimezone(timezone(timedelta(hours=1)))  # fixed offset: no tzdata needed
    state = record_review(new_review_state(paris), True, paris)
    assert state.last_review == NOW and state.last_review.tzinfo is UTC

"""Spaced reviews of mastered skills, scheduled by FSRS through its maintained package (``fsrs``).

FSRS (Free Spaced Repetition Scheduler, open-spaced-repetition/py-fsrs) models each item's memory
by stability and difficulty and schedules the next review when the predicted recall probability
falls to the desired retention (0.9). Here one "card" is one skill of one learner.

Rules that matter:
- every datetime is timezone-aware; naive ones are rejected with ``NaiveDatetimeError`` (a naive
  ``now`` would silently mean server-local time). Aware ones are converted to UTC, which is what
  ``fsrs`` requires;
- a ``ReviewState`` round-trips through a JSON-ready dict (``to_dict`` / ``from_dict``), the form
  stored on a Django ``JSONField``; unknown keys are an error, not ignored;
- no learning steps: by the time a skill enters reviews, BKT already says it is mastered, so the
  first review schedules in days (about 2 after a correct answer, 1 after a wrong one). A failed
  review of a review-state skill comes back after fsrs's 10-minute relearning step;
- no fuzzing by default, so the same answers at the same times give the same schedule (pass your
  own ``Scheduler`` to change either).

A new state is due at once. When a skill first reaches mastery, record that answer as its first
review so the next one lands days later::

    state = record_review(new_review_state(now), correct=True, now=now)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fsrs import Card, Rating, Scheduler, State

SCHEDULER = Scheduler(learning_steps=(), enable_fuzzing=False)

_STATE_NAMES = {State.Learning: "learning", State.Review: "review", State.Relearning: "relearning"}
_STATES_BY_NAME = {name: state for state, name in _STATE_NAMES.items()}
_KEYS = ("phase", "step", "stability", "difficulty", "due", "last_review", "reviews", "lapses")


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone reached the review scheduler."""


@dataclass(frozen=True)
class ReviewState:
    """The FSRS memory state of one skill for one learner.

    ``phase`` is fsrs's card state ("learning" until the first review, then "review", or
    "relearning" after a failed review); ``stability`` (days) and ``difficulty`` (1–10) are None
    before the first review. ``reviews`` and ``lapses`` (wrong answers) are counts for display.
    """

    due: datetime
    phase: str = "learning"
    step: int | None = 0
    stability: float | None = None
    difficulty: float | None = None
    last_review: datetime | None = None
    reviews: int = 0
    lapses: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "due", _utc(self.due, "due"))
        if self.last_review is not None:
            object.__setattr__(self, "last_review", _utc(self.last_review, "last_review"))
        if self.phase not in _STATES_BY_NAME:
            raise ValueError(f"phase must be one of {', '.join(_STATES_BY_NAME)}, not {self.phase!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; datetimes as ISO 8601 strings with their UTC offset."""
        return {
            "phase": self.phase,
            "step": self.step,
            "stability": self.stability,
            "difficulty": self.difficulty,
            "due": self.due.isoformat(),
            "last_review": self.last_review.isoformat() if self.last_review else None,
            "reviews": self.reviews,
            "lapses": self.lapses,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReviewState:
        unknown = set(data) - set(_KEYS)
        if unknown:
            raise ValueError(f"unknown review state keys: {', '.join(sorted(unknown))}")
        if "due" not in data:
            raise ValueError("review state needs a 'due' datetime")
        values = dict(data)
        values["due"] = _parse(values["due"], "due")
        if values.get("last_review") is not None:
            values["last_review"] = _parse(values["last_review"], "last_review")
        return cls(**values)


def new_review_state(now: datetime) -> ReviewState:
    """A skill that has never been reviewed; it is due at ``now``."""
    return ReviewState(due=_utc(now, "now"))


def record_review(
    state: ReviewState,
    correct: bool,
    now: datetime,
    *,
    fast: bool = False,
    scheduler: Scheduler = SCHEDULER,
) -> ReviewState:
    """The state after reviewing the skill at ``now``: wrong → Again; correct → Good, or Easy if ``fast``.

    Hard is never used: a graded answer says right or wrong, and a slow right answer is still Good.
    """
    rating = (Rating.Easy if fast else Rating.Good) if correct else Rating.Again
    card, _log = scheduler.review_card(_to_card(state), rating, review_datetime=_utc(now, "now"))
    return ReviewState(
        due=card.due,
        phase=_STATE_NAMES[card.state],
        step=card.step,
        stability=card.stability,
        difficulty=card.difficulty,
        last_review=card.last_review,
        reviews=state.reviews + 1,
        lapses=state.lapses + (0 if correct else 1),
    )


def due(states: Mapping[str, ReviewState], now: datetime) -> list[str]:
    """The keys of the states due at ``now``, most overdue first (ties in key order)."""
    now = _utc(now, "now")
    overdue = [(state.due, key) for key, state in states.items() if state.due <= now]
    return [key for _due, key in sorted(overdue)]


def retrievability(state: ReviewState, now: datetime, *, scheduler: Scheduler = SCHEDULER) -> float:
    """FSRS's predicted probability of recalling the skill at ``now`` (0 before the first review)."""
    return float(scheduler.get_card_retrievability(_to_card(state), current_datetime=_utc(now, "now")))


def _to_card(state: ReviewState) -> Card:
    # card_id is fsrs's own bookkeeping; passing one also skips the 1 ms sleep Card() takes to
    # make ids unique.
    return Card(
        card_id=1,
        state=_STATES_BY_NAME[state.phase],
        step=state.step,
        stability=state.stability,
        difficulty=state.difficulty,
        due=state.due,
        last_review=state.last_review,
    )


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(
            f"{name} must be timezone-aware (e.g. django.utils.timezone.now() or "
            f"datetime.now(timezone.utc)), not the naive {value.isoformat()}"
        )
    return value.astimezone(UTC)


def _parse(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return _utc(value, name)
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an ISO 8601 datetime, not {value!r}") from exc
    return _utc(parsed, name)

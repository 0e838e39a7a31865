"""Run a teaching run: rounds of the eight steps, saved after every step, resumable.

Rules that matter:
- the state file is the run's memory. :func:`run_teaching` loads it when it exists and skips every
  step a round lists in ``done_steps``, so a resumed run repeats no finished step (and no teacher
  call of one). A step interrupted in the middle runs again from its start;
- the saved settings must match the given ones, except ``rounds``, which may grow to extend a run;
  anything else raises :class:`~.state.TeachingError` (a changed budget would mix two experiments);
- ``should_stop()`` is polled before each step; a stop returns the state as saved (not finished);
- ``progress(step, round_index, info)`` is called when a step starts (``{"status": "started"}``)
  and when it is done and saved (``{"status": "done", ...}`` with the step's results);
- ``ratings()`` (optional) returns a person's ratings ``{explanation_id: True | False | None}``;
  they are applied to the state before every step, so an approval made on the run's page while
  it runs reaches the next build of training data and the next explanation prompts; ``edits()``
  (optional) likewise returns people's rewrites ``{explanation_id: text | None}`` (an edit that
  quotes an exam question is ignored: the exam guard holds for people too);
- exceptions propagate after the last finished step was saved: the caller stores the error and
  may run again later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from training.core.llm.base import LLM
from tutor.core.courses.course import Course
from tutor.core.runs.guard import ExamGuard
from tutor.core.runs.state import STEPS, RunConfig, RunState, TeachingError
from tutor.core.runs.steps import STEP_FUNCTIONS, Context, TrainFn

Progress = Callable[[str, int, dict[str, Any]], None]
Ratings = Callable[[], Mapping[str, "bool | None"]]
Edits = Callable[[], Mapping[str, "str | None"]]


def _resume(state_path: Path, course: Course, config: RunConfig) -> RunState | None:
    if not state_path.exists():
        return None
    state = RunState.load(state_path)
    if state.course != course.key:
        raise TeachingError(f"{state_path} is a run of course {state.course!r}, not {course.key!r}")
    saved, given = state.config.to_dict(), config.to_dict()
    changed = sorted(k for k in given if k != "rounds" and saved[k] != given[k])
    if changed:
        raise TeachingError(
            f"{state_path} was started with other settings ({', '.join(changed)}); "
            "start a new run to change them"
        )
    if config.rounds != state.config.rounds:
        state.config, state.finished = config, False  # set again when the last round is done
    return state


def _apply_ratings(state: RunState, given: Mapping[str, bool | None]) -> None:
    for round_state in state.rounds:
        for explanation in round_state.explanations:
            if explanation.id in given:
                explanation.approved = given[explanation.id]


def _apply_edits(state: RunState, given: Mapping[str, str | None], guard: ExamGuard) -> None:
    for round_state in state.rounds:
        for explanation in round_state.explanations:
            if explanation.id in given:
                text = (given[explanation.id] or "").strip()
                explanation.edited = text if text and not guard.exam_copy(text) else None


def run_teaching(
    course: Course,
    teacher: LLM,
    student: LLM,
    config: RunConfig,
    state_path: str | Path,
    *,
    train_fn: TrainFn | None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    ratings: Ratings | None = None,
    edits: Edits | None = None,
) -> RunState:
    """Run (or resume) ``config.rounds`` rounds of teaching; return the final state (also saved).

    ``train_fn`` (:class:`~.steps.TrainFn`) fine-tunes the student on a round's SFT records,
    continuing ``parent_adapter`` (None: from the base); it returns the adapter folder, or None when
    training is disabled (the adapter then stays as it was).
    """
    state_path = Path(state_path)
    if config.choice_scoring == "likelihood":
        # A student that cannot score (a model behind an HTTP API) raises UnsupportedOperation here,
        # before any teacher call is paid for, instead of at its first multiple-choice item.
        student.reply_loglikelihood([])
    state = _resume(state_path, course, config)
    if state is None:
        state = RunState(
            config=config,
            course=course.key,
            teacher=getattr(teacher, "name", "teacher"),
            student=getattr(student, "name", "student"),
        )
        state.save(state_path)
    if state.adapter_path and state.adapter_name:
        # A fresh process: put the student back where the last finished train step left it.
        student.load_adapter(state.adapter_name, state.adapter_path)
    ctx = Context(
        course=course, teacher=teacher, student=student, config=state.config, state=state, train_fn=train_fn
    )

    for index in range(state.config.rounds):
        round_state = state.round(index)
        for step in STEPS:
            if step in round_state.done_steps:
                continue
            if should_stop is not None and should_stop():
                state.save(state_path)
                return state
            if ratings is not None:
                _apply_ratings(state, ratings())
            if edits is not None:
                _apply_edits(state, edits(), ctx.guard)
            if progress is not None:
                progress(step, index, {"status": "started"})
            info = STEP_FUNCTIONS[step](ctx, round_state)
            round_state.done_steps.append(step)
            state.save(state_path)
            if progress is not None:
                progress(step, index, {"status": "done", **info})
    state.finished = True
    state.save(state_path)
    return state

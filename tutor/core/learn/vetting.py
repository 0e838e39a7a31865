"""What the tutor model wrote is checked before a learner reads it; what fails is replaced by the
course's own text, labelled as such.

Plain Python: the services pass the learner's exercise, the worked example, the course's expert
(``tutor.core.courses.expert``; None for a course without one) and the instructions the reply was
written under, and store the :class:`Shown` result.

Rules, per kind of reply (``mode``):

- ``explanation`` of a skill, taught through a worked example (an item of the skill that is not the
  learner's exercise): its final answer is the example's gold answer, every step is right, and it
  gives no answer to the learner's own exercise. Else: the example's worked solution from the
  course; else a note that no checked explanation is available. The second of a pair of
  alternatives that fails becomes a short note (the first one already shows the course's example).
- ``hint`` (a reply to a mistake with scaffolding: guiding question, hint, re-explanation): it does
  not state the exercise's final answer, and every step it writes is right. Else: a hint from the
  course (the first step of the worked solution), or, when that step gives the answer away, the
  worked solution of a similar item; else a note.
- ``example`` (the worked-example strategy: a similar item, solved): like an explanation; else the
  example's worked solution, else as ``hint`` (scaffolding) or ``solution``.
- ``solution`` (a reply to a mistake without scaffolding: the learner's exercise, solved): its final
  answer is the exercise's gold answer and every step is right. Else: the course's worked solution
  of the exercise, else its gold answer.
- ``answer`` to a free question (no gold answer to check): every step is right and, with
  scaffolding, it gives the current exercise's answer away nowhere. Else: as ``hint`` (scaffolding)
  or ``solution``; with no exercise on the screen a note.

Every mode: a reply that repeats a run of six words of its instructions (the system prompt, the
level, the decision on a mistake, the strategy and error descriptions), carries the decision's
labelled lines, writes one of its own sentences twice, or stops mid-sentence (a reply cut at its
length limit, or at :data:`MAX_REPLY_CHARS`) is not shown, whatever its final answer. Nothing the
course shows is passed off as the model's: ``source`` says who wrote what is shown, ``label`` says so
to the learner, and ``failure`` keeps why the model's text was not shown (for instructors and the
logs, never the learner).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from itertools import pairwise

from tutor.core.courses.checks import echoed, loops_or_stops, wrong_steps
from tutor.core.courses.course import Exercise
from tutor.core.courses.expert import Expert, Verdict
from tutor.core.courses.grading import grade, normalize_text, parse_number
from tutor.core.learn.prompts import MAX_REPLY_CHARS, clip, reads_back_decision

MODES = ("explanation", "hint", "example", "solution", "answer")

MODEL, EXPERT, NOTE = "model", "expert", "note"
SOLUTION_LABEL = "Worked solution from the course"
EXAMPLE_LABEL = "Worked example from the course"
HINT_LABEL = "Hint from the course"
ANSWER_LABEL = "Answer from the course"
NOTE_LABEL = "Note"

NO_EXPLANATION = (
    "No checked explanation is available: the tutor's explanation did not pass its checks, and this "
    "course has no worked solution to show instead. Try the exercise, or ask the tutor a question."
)
NO_EXAMPLE = (
    "No checked explanation is available for this skill: the course has no worked example to check one "
    "against. Try the exercise, or ask the tutor a question."
)
NO_SECOND_EXPLANATION = (
    "A second explanation was written for you to compare, but it did not pass its checks, so it is not shown."
)
NO_HINT = (
    "No checked hint is available for this exercise: the tutor's reply did not pass its checks. Read "
    "the question again, or use “Show the full solution”."
)
NO_ANSWER = "The tutor's answer did not pass its checks, so it is not shown. Try asking in other words."


@dataclass(frozen=True)
class Shown:
    """What the learner sees: ``text``, written by ``source`` (model, expert or note) and shown under
    ``label`` ("" for the model's own); ``failure`` is why the model's text was not shown."""

    text: str
    source: str
    label: str = ""
    failure: str = ""


# ---------------------------------------------------------------- checks

_DIGITS_RE = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?")
_WORD_RE = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


def _numbers(text: str) -> set[Decimal]:
    """Every number ``text`` writes, in digits or in words (one or two words: "forty two")."""
    found = {Decimal(m.group(0).replace(",", "")) for m in _DIGITS_RE.finditer(text)}
    words = _WORD_RE.findall(text)
    for chunk in [*words, *(" ".join(pair) for pair in pairwise(words))]:
        value = parse_number(chunk)
        if value is not None:
            found.add(value)
    return found


def gives_away(exercise: Exercise, text: str, *, allowed: str = "") -> bool:
    """Whether ``text`` states the final answer of ``exercise``: as its own final answer, or anywhere
    as a number (or phrase) that neither the question nor ``allowed`` (a worked example's own text)
    contains. Errs on the side of caution: a false alarm only shows the course's text instead."""
    if grade(exercise, text).correct:
        return True
    context = f"{exercise.prompt}\n{allowed}"
    if exercise.answer_type == "number":
        gold = parse_number(exercise.answer)
        return gold is not None and gold in _numbers(text) and gold not in _numbers(context)
    want = normalize_text(exercise.answer)
    return (
        bool(want)
        and f" {want} " in f" {normalize_text(text)} "
        and (f" {want} " not in f" {normalize_text(context)} ")
    )


def _example_text(example: Exercise) -> str:
    return f"{example.prompt}\n{example.answer}\n{example.solution}"


def check_reply(
    mode: str,
    text: str,
    *,
    exercise: Exercise | None,
    example: Exercise | None,
    expert: Expert | None,
    instructions: Sequence[str],
    scaffolding: bool = True,
) -> Verdict:
    """Whether the model's ``text`` may be shown (see the module docstring for the rules)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not text.strip():
        return Verdict(False, "the tutor wrote nothing")
    copied = echoed(text, instructions)
    if copied:
        return Verdict(False, f"it repeats its instructions: “{copied}”")
    if reads_back_decision(text):
        return Verdict(False, "it reads the tutor's decision back")
    fault = loops_or_stops(text)
    if fault:
        return Verdict(False, f"it {fault}")
    checker = expert or Expert()  # no expert: final answers against the gold answer, steps by arithmetic
    if mode in ("explanation", "example"):
        if example is None:
            return Verdict(False, "there is no worked example to check it against")
        verdict = checker.check(example, text)
        if not verdict.ok:
            return Verdict(False, f"the worked example's {verdict.reason}")
        guarded = mode == "explanation" or scaffolding
        if exercise is not None and guarded and gives_away(exercise, text, allowed=_example_text(example)):
            return Verdict(False, "it gives away the answer to the learner's exercise")
    elif mode == "solution":
        if exercise is None:
            return Verdict(False, "there is no exercise to check it against")
        verdict = checker.check(exercise, text)
        if not verdict.ok:
            return verdict
    elif exercise is not None:  # hint, answer
        verdict = checker.check(exercise, text, final_answer=False)
        if not verdict.ok:
            return verdict
        if (mode == "hint" or scaffolding) and gives_away(exercise, text):
            return Verdict(False, "it gives away the answer to the learner's exercise")
    wrong = wrong_steps(text)  # any course: a wrong sum is wrong, whatever the expert can read
    if wrong:
        return Verdict(False, f"a step is wrong: {wrong[0]!r}")
    return Verdict(True)


# ---------------------------------------------------------------- what is shown instead


def verified_solution(expert: Expert | None, exercise: Exercise) -> str | None:
    """The expert's worked solution of ``exercise``, only when it passes the expert's own check."""
    if expert is None:
        return None
    solution = expert.worked_solution(exercise)
    if not solution or not expert.check(exercise, solution).ok or wrong_steps(solution):
        return None
    return solution.strip()


def worked_example(expert: Expert | None, example: Exercise | None) -> Shown | None:
    """The example, solved by the course (its question first: the solution alone may not say it)."""
    solution = verified_solution(expert, example) if example is not None else None
    if example is None or solution is None:
        return None
    return Shown(f"Example: {example.prompt}\n{solution}", EXPERT, EXAMPLE_LABEL)


def course_hint(expert: Expert | None, exercise: Exercise, similar: Exercise | None) -> Shown:
    """The first step of the course's solution, when it does not give the answer away; else a
    similar item solved; else a note."""
    step = expert.first_step(exercise) if expert is not None and verified_solution(expert, exercise) else None
    if step and not gives_away(exercise, step):
        return Shown(step.strip(), EXPERT, HINT_LABEL)
    if similar is not None and similar.answer != exercise.answer:
        shown = worked_example(expert, similar)
        if shown is not None:
            return shown
    return Shown(NO_HINT, NOTE, NOTE_LABEL)


def course_solution(expert: Expert | None, exercise: Exercise) -> Shown:
    solution = verified_solution(expert, exercise)
    if solution is not None:
        return Shown(solution, EXPERT, SOLUTION_LABEL)
    return Shown(f"Answer: {exercise.answer}", EXPERT, ANSWER_LABEL)


def replacement(
    mode: str,
    *,
    exercise: Exercise | None,
    example: Exercise | None,
    similar: Exercise | None,
    expert: Expert | None,
    scaffolding: bool = True,
    second_of_pair: bool = False,
) -> Shown:
    """What is shown when the model's reply fails its checks (see the module docstring)."""
    if mode == "explanation":
        if second_of_pair:
            return Shown(NO_SECOND_EXPLANATION, NOTE, NOTE_LABEL)
        return worked_example(expert, example) or Shown(NO_EXPLANATION, NOTE, NOTE_LABEL)
    if mode == "example":
        shown = worked_example(expert, example)
        if shown is not None:
            return shown
    if exercise is None:
        return Shown(NO_ANSWER, NOTE, NOTE_LABEL)
    if mode == "hint" or (mode != "solution" and scaffolding):
        return course_hint(expert, exercise, similar)
    return course_solution(expert, exercise)


def vet(
    mode: str,
    text: str,
    *,
    exercise: Exercise | None,
    example: Exercise | None = None,
    similar: Exercise | None = None,
    expert: Expert | None,
    instructions: Sequence[str],
    scaffolding: bool = True,
    second_of_pair: bool = False,
) -> Shown:
    """The model's ``text`` if it passes :func:`check_reply`, else the course's :func:`replacement`
    with the reason it failed."""
    text = clip(text, MAX_REPLY_CHARS)
    verdict = check_reply(
        mode,
        text,
        exercise=exercise,
        example=example,
        expert=expert,
        instructions=instructions,
        scaffolding=scaffolding,
    )
    if verdict.ok:
        return Shown(text, MODEL)
    shown = replacement(
        mode,
        exercise=exercise,
        example=example,
        similar=similar,
        expert=expert,
        scaffolding=scaffolding,
        second_of_pair=second_of_pair,
    )
    return replace(shown, failure=verdict.reason)

"""A course's own knowledge, used to check, correct and complete what a teacher model writes.

An expert is rule-based, never a model, and everything it writes is labelled as its own. Three
kinds, from :func:`expert_for`:

- a pack's expert (:class:`PackExpert`): reads any phrasing of the pack's questions, computes
  answers and worked solutions, checks every step of a text, diagnoses a wrong answer in one
  sentence and writes new items in training phrasings;
- an imported course's gold solutions (:class:`GoldSolutionsExpert`): answers and worked solutions
  of the course's own items, nothing for a question it does not hold, no new items;
- none (a course with neither): final answers are checked against gold answers only, and new
  items only by a second teacher answer (:func:`expert_summary` of None says so).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tutor.core.courses.checks import wrong_steps
from tutor.core.courses.course import Course, Exercise
from tutor.core.courses.grading import ExtractType, extract_answer, grade
from tutor.core.courses.packs import (
    ARITHMETIC_FAMILIES,
    COUNTING_FAMILIES,
    OPERATORS,
    Family,
    UnsolvableError,
    count_solution,
    make_item,
    solution_of,
    solve,
)
from tutor.core.courses.phrasings import BY_KEY, phrasings_for, read

# The restatement a worked solution opens with: "79 - 23:", "23 - 7 = 11." (its first line).
_RESTATED = re.compile(r"\s*(?P<a>\d[\d,]*)\s*(?P<op>[-+×x*])\s*(?P<b>\d[\d,]*)")
_SYMBOLS = {"+": "+", "-": "-", "*": "×", "/=": "÷"}  # an operation as the solutions write it
_RESTATED_OPS = ("+", "-", "*")  # the operations a restatement is read for

NO_EXPERT = (
    "This course has no expert: explanations are checked only by their final answer against the gold "
    "answer, generated items only by a second teacher answer, and nothing replaces what fails."
)


@dataclass(frozen=True)
class Verdict:
    """Whether a text may teach: ``ok``, else ``reason`` says why not."""

    ok: bool
    reason: str = ""


class Expert:
    """The interface; see the module docstring for what each kind does."""

    name = "expert"
    describe = ""
    can_generate = False

    def answer(self, exercise: Exercise) -> str | None:
        """The gold answer, worked out by the expert (None: it cannot read the question)."""
        return None

    def worked_solution(self, exercise: Exercise) -> str | None:
        """A worked solution ending with "Answer: <gold>", or None."""
        return None

    def check(self, exercise: Exercise, text: str, *, final_answer: bool = True) -> Verdict:
        """Whether ``text`` may teach ``exercise``: its steps are right and (with ``final_answer``)
        its final answer is the gold one."""
        if final_answer:
            result = grade(exercise, text)
            if not result.correct:
                return Verdict(False, f"final answer is wrong ({result.reason})")
        wrong = wrong_steps(text)
        if wrong:
            return Verdict(False, f"a step is wrong: {wrong[0]!r}")
        return Verdict(True)

    def mistake(self, exercise: Exercise, student_answer: str) -> str:
        """One sentence on what went wrong in ``student_answer``."""
        said = _said(exercise, student_answer)
        if said is None:
            return "The answer gives no final answer to check."
        return f"The answer {said} is not right; the right answer is {exercise.answer}."

    def first_step(self, exercise: Exercise) -> str | None:
        """The first step of the worked solution, for a hint (None: none known)."""
        solution = self.worked_solution(exercise)
        if not solution:
            return None
        steps = [line for line in solution.split("\n") if line.strip() and not line.startswith("Answer:")]
        # A solution that opens by restating the question ("47 + 38:") hints with its next line.
        if len(steps) > 1 and steps[0].rstrip().endswith(":"):
            return steps[1]
        return steps[0] if steps else None

    def phrasing_of(self, prompt: str) -> str | None:
        """The phrasing a question is asked in, when the expert knows it."""
        return None

    def misread(self, exercise: Exercise, student_answer: str) -> str | None:
        """The question as ``student_answer`` restates it (``"23 - 7"``), when that is not the
        question: a reading mistake, not a slip in the working. None when the restatement is right,
        absent, or the expert cannot tell."""
        return None

    def new_items(
        self,
        source: Exercise,
        k: int,
        rng: random.Random,
        *,
        avoid: frozenset[str],
        same_phrasing: int = 0,
    ) -> list[Exercise]:
        """Up to ``k`` new train items like ``source`` (same skill and level): the first
        ``same_phrasing`` in the source's own phrasing (practice in reading it), the rest in training
        phrasings other than the phrasings in ``avoid`` where there are others."""
        return []


def _said(exercise: Exercise, text: str) -> str | None:
    kind: ExtractType = exercise.answer_type
    if exercise.answer_type == "text" and " R " in exercise.answer:
        kind = "remainder"
    return extract_answer(text, kind, exercise.options) if text.strip() else None


class PackExpert(Expert):
    """The expert of a built-in pack: its solvers, worked-solution writers and item generators."""

    describe = (
        "the pack's own solver checks every final answer and every written step, writes the worked "
        "solution and a one-sentence diagnosis where the teacher's explanation fails, and writes new "
        "items in training phrasings where the teacher's fail"
    )
    can_generate = True

    def __init__(self, name: str, families: tuple[Family, ...]) -> None:
        self.name = name
        self.families = families
        self.by_skill = {f.skill.key: f for f in families}

    def answer(self, exercise: Exercise) -> str | None:
        try:
            return solve(exercise)
        except UnsolvableError:
            return None

    def worked_solution(self, exercise: Exercise) -> str | None:
        reading = read(exercise.prompt)
        if reading is None:
            return exercise.solution or None
        if reading.phrasing.op == "count":
            return count_solution(reading.target, reading.items)
        return solution_of(reading.phrasing.op, reading.a, reading.b)

    def check(self, exercise: Exercise, text: str, *, final_answer: bool = True) -> Verdict:
        verdict = super().check(exercise, text, final_answer=final_answer)
        if verdict.ok and final_answer and self.answer(exercise) not in (None, exercise.answer):
            return Verdict(False, "the course's own gold answer disagrees with the expert")
        return verdict

    def mistake(self, exercise: Exercise, student_answer: str) -> str:
        said = _said(exercise, student_answer)
        reading = read(exercise.prompt)
        misread = self.misread(exercise, student_answer)
        if misread is not None and reading is not None:
            asked = f"{reading.a} {_SYMBOLS[reading.phrasing.op]} {reading.b}"
            return f"The answer reads the question as {misread}; it asks for {asked} = {exercise.answer}."
        if said is None or reading is None or reading.phrasing.op in ("count", "/", "max", "half"):
            return super().mistake(exercise, student_answer)
        a, b, op = reading.a, reading.b, reading.phrasing.op
        try:
            given = int(said)
        except ValueError:
            return super().mistake(exercise, student_answer)
        gold = int(exercise.answer)
        symbol = _SYMBOLS[op]
        others = {"+": a + b, "-": a - b, "*": a * b}
        for other_op, value in others.items():
            if other_op != op and value == given:
                name = {"+": "added", "-": "subtracted", "*": "multiplied"}[other_op]
                return f"The answer {given} {name} the numbers; the question asks for {a} {symbol} {b}."
        diff = abs(given - gold)
        if diff and len(str(diff)) > 1 and str(diff).strip("0") == "1":
            return (
                f"The answer {given} is off by {diff}: a carry or a borrow went wrong; "
                f"{a} {symbol} {b} = {gold}."
            )
        return f"The answer {given} is not {a} {symbol} {b}, which is {gold}."

    def phrasing_of(self, prompt: str) -> str | None:
        reading = read(prompt)
        return reading.phrasing.key if reading is not None else None

    def misread(self, exercise: Exercise, student_answer: str) -> str | None:
        reading = read(exercise.prompt)
        if reading is None or reading.phrasing.op not in _RESTATED_OPS:
            return None
        m = _RESTATED.match(student_answer.strip().split("\n", 1)[0])
        if m is None or OPERATORS[m.group("op")] != reading.phrasing.op:
            return None  # no restatement, or another operation (mistake() names a wrong operation)
        a, b = (int(m.group(n).replace(",", "")) for n in ("a", "b"))
        right = {(reading.a, reading.b)} | ({(reading.b, reading.a)} if reading.phrasing.op != "-" else set())
        return None if (a, b) in right else f"{a} {_SYMBOLS[reading.phrasing.op]} {b}"

    def new_items(
        self,
        source: Exercise,
        k: int,
        rng: random.Random,
        *,
        avoid: frozenset[str],
        same_phrasing: int = 0,
    ) -> list[Exercise]:
        family = self.by_skill.get(source.skill)
        if family is None or k <= 0:
            return []
        level = min(max(source.difficulty, 1), family.levels)
        training = phrasings_for(family.op, held_out=False)
        choices = [p for p in training if p.key not in avoid] or list(training)
        own = BY_KEY.get(source.phrasing)
        items = []
        for j in range(k):
            chosen = own if own in training and j < same_phrasing else rng.choice(choices)
            prompt, answer, answer_type, solution, phrasing = make_item(family, rng, level, chosen)
            items.append(
                Exercise(
                    key=f"{source.key}-expert-{j}",
                    skill=source.skill,
                    prompt=prompt,
                    answer=answer,
                    answer_type=answer_type,
                    solution=solution,
                    difficulty=level,
                    split="train",
                    phrasing=phrasing.key,
                )
            )
        return items


class GoldSolutionsExpert(Expert):
    """An imported course's gold answers and worked solutions, for its own items only."""

    name = "gold solutions"
    describe = (
        "final answers are checked against the course's gold answers and, where an explanation "
        "fails, the item's gold worked solution is used instead; it cannot check steps, read new "
        "questions or write new items"
    )

    def __init__(self, course: Course) -> None:
        self._by_prompt = {" ".join(e.prompt.casefold().split()): e for e in course.exercises}

    def _known(self, exercise: Exercise) -> Exercise | None:
        return self._by_prompt.get(" ".join(exercise.prompt.casefold().split()))

    def answer(self, exercise: Exercise) -> str | None:
        known = self._known(exercise)
        return known.answer if known is not None else None

    def worked_solution(self, exercise: Exercise) -> str | None:
        known = self._known(exercise)
        if known is None or not known.solution.strip():
            return None
        solution = known.solution.strip()
        if not grade(known, solution).correct:
            solution += f"\nAnswer: {known.answer}"
        return solution

    def check(self, exercise: Exercise, text: str, *, final_answer: bool = True) -> Verdict:
        if final_answer:
            result = grade(exercise, text)
            if not result.correct:
                return Verdict(False, f"final answer is wrong ({result.reason})")
        return Verdict(True)


PACK_EXPERTS: dict[str, Expert] = {
    "arithmetic": PackExpert("arithmetic", ARITHMETIC_FAMILIES),
    "counting": PackExpert("counting", COUNTING_FAMILIES),
}
EXPERT_NAMES = (*PACK_EXPERTS, "gold")


def expert_for(course: Course) -> Expert | None:
    """The course's expert: its pack's, else its gold solutions when it has any, else None."""
    if course.expert in PACK_EXPERTS:
        return PACK_EXPERTS[course.expert]
    if any(e.solution.strip() for e in course.exercises):
        return GoldSolutionsExpert(course)
    return None


def expert_summary(expert: Expert | None) -> str:
    """What the run can verify with this expert, for the run page and the report."""
    return f"{expert.name}: {expert.describe}" if expert is not None else NO_EXPERT


__all__ = [
    "EXPERT_NAMES",
    "Expert",
    "GoldSolutionsExpert",
    "PackExpert",
    "Verdict",
    "expert_for",
    "expert_summary",
]

"""The prompts of a teaching run, and the parsers for what the teacher writes back.

Kept short on purpose: small students lose the question in long prompts, and every token of a
teacher prompt is paid for once per item. Every prompt asks for the final answer on its own last
line as ``Answer: …``, the marker :mod:`tutor.core.courses.grading` reads first.

- :func:`student_prompt`: the question (options lettered for a choice item) and the answer line.
  The same prompt is the user turn of every SFT record, so training and examining look alike.
- :func:`student_prompt_with_explanation`: the explanation, then the question (scoring step).
- :func:`explanation_prompt`: the question, the student's own wrong answer, up to two explanations
  that helped this student before on the skill, and the format ``Mistake: / Solution: / Answer:``.
  The gold answer is *not* shown: the verification gate checks the teacher got it on its own.
- :func:`generation_prompt`: one source item and the strict format ``Question: / Solution: /
  Answer:`` for ``k`` new items, separated by lines of ``---``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import ascii_uppercase

from tutor.core.courses.course import Exercise

Conversation = list[dict[str, str]]

ANSWER_LINE = "Answer with the final answer on the last line as 'Answer: …'."
TEACHER_SYSTEM = "You are a patient, precise teacher. You keep explanations short and correct."
EXPLAIN_INSTRUCTION = (
    "Explain it for this student. Say in one sentence what went wrong in their answer, then "
    "solve the question in short steps. Use exactly this format:\n"
    "Mistake: <one sentence>\nSolution: <short steps>\nAnswer: <final answer>"
)
GENERATE_INSTRUCTION = (
    "Write {k} new exercises of the same kind and difficulty, with different numbers, each asked in "
    "other words (plainly, in words, or as a short story), each with a worked solution. Use exactly "
    "this format for each, separated by a line with ---:\nQuestion: <the question>{options}\n"
    "Solution: <short steps>\nAnswer: <final answer only>"
)
# What the teacher is told to do: a text that repeats any of it is echoing, not teaching.
INSTRUCTIONS = (TEACHER_SYSTEM, EXPLAIN_INSTRUCTION, GENERATE_INSTRUCTION.format(k="several", options=""))
STUDENT_ANSWER_LIMIT = 400  # characters of the student's answer shown to the teacher
HELPFUL_LIMIT = 600  # characters of each earlier helpful explanation shown to the teacher


def question_text(exercise: Exercise) -> str:
    """The prompt, with lettered options for a multiple-choice item."""
    if not exercise.options:
        return exercise.prompt
    options = "\n".join(f"{ascii_uppercase[i]}) {option}" for i, option in enumerate(exercise.options))
    return f"{exercise.prompt}\n{options}"


def student_prompt(exercise: Exercise) -> Conversation:
    return [{"role": "user", "content": f"{question_text(exercise)}\n{ANSWER_LINE}"}]


def student_prompt_with_explanation(exercise: Exercise, explanation: str) -> Conversation:
    content = (
        f"Here is an explanation of a related question:\n{explanation.strip()}\n\n"
        f"Now answer this question.\n{question_text(exercise)}\n{ANSWER_LINE}"
    )
    return [{"role": "user", "content": content}]


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def explanation_prompt(
    exercise: Exercise, student_answer: str, helpful: list[tuple[str, str]]
) -> Conversation:
    """``helpful`` holds (question, explanation) pairs that helped this student before (at most 2 used)."""
    parts = [
        f"A student answered this question wrongly.\nQuestion: {question_text(exercise)}\n"
        f"Student's answer: {_clip(student_answer, STUDENT_ANSWER_LIMIT) or '(no answer)'}"
    ]
    if helpful:
        shown = "\n---\n".join(f"Question: {q}\n{_clip(text, HELPFUL_LIMIT)}" for q, text in helpful[:2])
        parts.append(f"Explanations that helped this student before:\n---\n{shown}\n---")
    parts.append(EXPLAIN_INSTRUCTION)
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def generation_prompt(exercise: Exercise, k: int) -> Conversation:
    options = "\nOptions: <the options, separated by ' | '>" if exercise.options else ""
    content = (
        f"Here is an exercise and its worked solution.\nQuestion: {question_text(exercise)}\n"
        f"{_worked(exercise)}\n\n{GENERATE_INSTRUCTION.format(k=k, options=options)}"
    )
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": content}]


def _worked(exercise: Exercise) -> str:
    solution = exercise.solution.strip() or f"Answer: {exercise.answer}"
    return solution if solution.startswith("Solution:") else f"Solution: {solution}"


# ---------------------------------------------------------------- parsers


@dataclass(frozen=True)
class DraftItem:
    """One exercise as the teacher wrote it; not yet checked."""

    question: str
    solution: str  # the worked steps, ending with the "Answer: …" line
    answer: str
    options: tuple[str, ...] = ()


_FIELD_RE = re.compile(  # "Question: …", also "1. Question: …" and "**Question**: …"
    r"^\s*(?:\d+[.)]\s*)?\**(Question|Options|Solution|Answer)\**\s*:\s*(.*)$",
    re.IGNORECASE,
)


def parse_generated(text: str) -> list[DraftItem]:
    """Every complete ``Question / Solution / Answer`` block in ``text``, in order.

    Blocks start at each ``Question:`` line (the ``---`` separators are optional); a block without
    a question, a solution or an answer is skipped. Multi-line questions and solutions are kept.
    """
    drafts: list[DraftItem] = []
    current: dict[str, list[str]] | None = None
    field_name = ""

    def close() -> None:
        if current is None:
            return
        question = "\n".join(current.get("question", [])).strip()
        steps = "\n".join(current.get("solution", [])).strip()
        answer = " ".join(current.get("answer", [])).strip()
        options = tuple(o.strip() for o in " ".join(current.get("options", [])).split("|") if o.strip())
        if question and steps and answer:
            drafts.append(DraftItem(question, f"{steps}\nAnswer: {answer}", answer, options))

    for line in text.splitlines():
        if line.strip() == "---":
            field_name = ""
            continue
        m = _FIELD_RE.match(line)
        if m:
            field_name = m.group(1).lower()
            if field_name == "question":
                close()
                current = {}
            if current is not None:
                current.setdefault(field_name, []).append(m.group(2))
            if field_name == "answer":
                field_name = ""  # the answer is one line; what follows is chatter
        elif current is not None and field_name and field_name != "answer":
            current[field_name].append(line)
    close()
    return drafts


_SOLUTION_RE = re.compile(r"^\s*\**Solution\**\s*:\s*", re.IGNORECASE | re.MULTILINE)


def solution_part(explanation: str) -> str:
    """The worked solution of an explanation (from ``Solution:`` on), the SFT target.

    The ``Mistake:`` sentence speaks to one wrong answer; trained on, it would teach the student to
    open every answer with a mistake it never made. Without a ``Solution:`` marker, the whole text.
    """
    m = _SOLUTION_RE.search(explanation)
    return explanation[m.end() :].strip() if m else explanation.strip()

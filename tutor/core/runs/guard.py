"""The exam guard of a teaching run: exam items never reach explanations, generated items or records.

Two layers, as in :mod:`tutor.core.courses.course`:

- items that feed explanations, scoring, generation or records go through
  :func:`~tutor.core.courses.course.training_safe` (an exam item there is a bug and raises);
- text the *teacher* writes is checked for copies of exam questions: a teacher may quote or
  "generate" an exam question. Such an explanation or generated item is dropped and counted
  (the teacher's behaviour, not our bug), and :meth:`ExamGuard.check_records` raises
  :class:`~tutor.core.courses.course.ExamLeakError` if a record still holds one, the last line of defence.

A copy is an exam prompt appearing in the text, compared case-folded with whitespace collapsed, as
whole words ("What is 7 + 8?" is not found inside "What is 17 + 8?"). A prompt that begins or ends
with a symbol (a bracket sequence, an operator) is whole only where the text around it does not go on
with more symbols: "Sequence: ( ) ]" is not found inside "Sequence: ( ) ] { }", a longer sequence
and a different question, but is inside "Sequence: ( ) ] Answer: Invalid".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tutor.core.courses.course import Course, ExamLeakError, Exercise


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


# Characters that end a sentence or wrap a quotation: text may follow them directly
# ("What is 7 + 8? Answer: 15") without making another question.
_PUNCTUATION = ".?!,;:'\"«»“”‘’"
# One character that is neither a word character, a space nor punctuation: a symbol.
_SYMBOL = r"[^\w\s" + re.escape(_PUNCTUATION) + r"]"


def _whole(prompt: str) -> str:
    """A pattern matching ``prompt`` (normalised) only where it stands whole in the text."""
    body = re.escape(prompt)
    if re.match(r"\w", prompt):
        before = r"(?<!\w)"
    elif re.match(_SYMBOL, prompt):
        # Not continuing a run of symbols ("{ [ ( ) ]" holds a longer sequence, not "[ ( ) ]").
        before = rf"(?<!{_SYMBOL})(?<!{_SYMBOL} )"
    else:
        before = ""
    last = prompt[-1:]
    if re.match(r"\w", last):
        after = r"(?!\w)"
    elif re.match(_SYMBOL, last):
        after = rf"(?! ?{_SYMBOL})"
    else:
        after = ""
    return before + body + after


class ExamGuard:
    """Guards a course's exam split, and any other held-out items given (the general probe)."""

    def __init__(self, course: Course, held_out: Iterable[Exercise] = ()) -> None:
        exam = [*course.split("exam"), *held_out]
        self.exam_keys = frozenset(e.key for e in exam)
        prompts = sorted({_norm(e.prompt) for e in exam}, key=len, reverse=True)
        # One alternation: a record is scanned once, not once per exam item.
        self._pattern = re.compile("|".join(_whole(p) for p in prompts)) if prompts else None

    def exam_copy(self, text: str) -> str | None:
        """The exam prompt (normalised) that ``text`` contains, or None."""
        if self._pattern is None:
            return None
        m = self._pattern.search(_norm(text))
        return m.group(0) if m else None

    def check_records(self, records: Iterable[dict[str, Any]]) -> None:
        """Raise ExamLeakError if a record names an exam item or holds an exam question's text."""
        for number, record in enumerate(records, start=1):
            meta = record.get("meta", {})
            named = {meta.get("item"), meta.get("source_item")} & self.exam_keys
            if named:
                raise ExamLeakError(f"record {number} was built from exam item {sorted(named)[0]}")
            copy = self.exam_copy("\n".join(_texts(record)))
            if copy:
                raise ExamLeakError(f"record {number} contains the exam question {copy!r}")


def _texts(value: Any) -> Iterable[str]:
    """Every string inside the training fields of a record (not its metadata)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key != "meta":
                yield from _texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner)

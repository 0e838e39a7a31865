"""Checks on text a teacher model wrote, before it teaches anyone: steps, answers, echoes.

Model output is untrusted. A worked solution, explanation or hint is shown to a learner or trained
on only when it passes: every arithmetic step it writes is right (:func:`wrong_steps`), and it does
not repeat the instructions or decisions it was given (:func:`echoed`), itself (:func:`repeated`), or
stop mid-sentence (:func:`unfinished`: a reply cut at its length limit; both read by
:func:`loops_or_stops`). A model student's answer is
right only when its final answer is and nothing it claims on the way is false
(:func:`grade_model_answer`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from tutor.core.courses.grading import GradeResult, grade

_NUM = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_OP = r"[-+×x*÷/−]"
# "4 + 3 + 1 = 8", "10 ÷ 7 = 1 R 3", "47×6=282" (an operator between every pair of numbers)
_STEP_RE = re.compile(
    rf"(?<![\w.])(?P<lhs>{_NUM}(?:\s*{_OP}\s*{_NUM})+)\s*=\s*(?P<rhs>{_NUM})(?:\s*R\s*(?P<rem>\d+))?(?!\.?\d)(?!\w)"
)
_TOKEN_RE = re.compile(rf"{_NUM}|{_OP}")
# Claims about two numbers in words, where the first number opens a sentence or line (optionally
# after "So"/"Then"): "97 is larger than 24", "30 is 20 more than 10", "88 is 94.", "So 86 = 100.".
# A number inside a phrase ("Half of 36 is 18", "38 divided by 2 is 19") is not the subject.
_OPENS = r"(?:^|(?<=[.!?;:]\s)|(?<=\n))\s*(?:(?:so|then),?\s+)?"
_COMPARE_RE = re.compile(
    rf"{_OPENS}(?P<a>{_NUM}) is (?:a |the )?(?P<word>larger|bigger|greater|more|smaller|less)"
    rf"(?: number)? than (?P<b>{_NUM})(?!\.?\d)",
    re.IGNORECASE | re.MULTILINE,
)
_BY_RE = re.compile(
    rf"{_OPENS}(?P<a>{_NUM}) is (?P<n>{_NUM}) (?P<word>more|less|fewer) than (?P<b>{_NUM})(?!\.?\d)",
    re.IGNORECASE | re.MULTILINE,
)
# A bare identity of two different numbers ending a clause.
_SAME_RE = re.compile(
    rf"{_OPENS}(?P<a>{_NUM})\s*(?:is|=)\s*(?P<b>{_NUM})(?=\s*(?:[.;,!]\s|[.;,!]?$))",
    re.IGNORECASE | re.MULTILINE,
)
_WORD_RE = re.compile(r"[a-z']+")


def _number(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def _evaluate(lhs: str, remainder: bool) -> tuple[Fraction, Fraction] | None:
    """The value of a chain like "4 + 3 + 1" (× and ÷ before + and -); with ``remainder`` a single
    division "a ÷ b" gives (quotient, remainder). None when it cannot be evaluated (÷ 0)."""
    tokens = _TOKEN_RE.findall(lhs)
    numbers = [_number(t) for t in tokens[0::2]]
    ops = [{"x": "*", "×": "*", "÷": "/", "−": "-"}.get(t, t) for t in tokens[1::2]]
    if remainder:
        if ops != ["/"] or numbers[1] == 0:
            return None
        q, r = divmod(numbers[0], numbers[1])
        return Fraction(q), Fraction(r)
    # × and ÷ first, then + and - from the left.
    values, pending = [numbers[0]], []
    for op, n in zip(ops, numbers[1:], strict=True):
        if op in "*/":
            if op == "/" and n == 0:
                return None
            values[-1] = values[-1] * n if op == "*" else values[-1] / n
        else:
            pending.append(op)
            values.append(n)
    total = values[0]
    for op, n in zip(pending, values[1:], strict=True):
        total = total + n if op == "+" else total - n
    return total, Fraction(0)


def wrong_steps(text: str) -> list[str]:
    """Every written step ``a op b ... = c`` (also ``a ÷ b = q R r``) whose arithmetic is wrong, and
    every false claim about two numbers in words, where ``a`` opens a sentence or line: ``a is
    larger/greater/bigger/more/smaller/less than b``, ``a is n more/less than b``, and a bare
    ``a is b`` / ``a = b`` of two different numbers ending a clause (a weak model's "88 is 94." or
    "So 86 = 100."). A number inside a phrase ("Half of 36 is 18") is not read as a claim."""
    wrong = [m.group(0).strip() for m in _COMPARE_RE.finditer(text) if not _compare_holds(m)]
    wrong += [m.group(0).strip() for m in _BY_RE.finditer(text) if not _by_holds(m)]
    wrong += [
        m.group(0).strip() for m in _SAME_RE.finditer(text) if _number(m.group("a")) != _number(m.group("b"))
    ]
    for m in _STEP_RE.finditer(text):
        rem = m.group("rem")
        value = _evaluate(m.group("lhs"), remainder=rem is not None)
        if value is None:
            wrong.append(m.group(0))
            continue
        result, remainder = value
        if result != _number(m.group("rhs")) or (rem is not None and remainder != int(rem)):
            wrong.append(m.group(0))
    return wrong


def grade_model_answer(exercise: Any, text: str) -> GradeResult:
    """A model's answer is right only when :func:`~.grading.grade` finds the gold answer *and* no step
    or claim it writes is false (:func:`wrong_steps`). The grader reads the last number of a text
    without a final-answer line, so "24 is a larger number than 97." would otherwise count as the
    answer 97: a right number after a false sentence is not a right answer. People's answers (a
    number typed into a box) are graded by :func:`~.grading.grade` alone."""
    result = grade(exercise, text)
    if result.correct:
        wrong = wrong_steps(text)
        if wrong:
            return GradeResult(False, result.extracted, f"a step or claim is false: {wrong[0]!r}")
    return result


def _compare_holds(m: re.Match[str]) -> bool:
    a, b = _number(m.group("a")), _number(m.group("b"))
    return a > b if m.group("word").lower() in ("larger", "bigger", "greater", "more") else a < b


def _by_holds(m: re.Match[str]) -> bool:
    a, n, b = _number(m.group("a")), _number(m.group("n")), _number(m.group("b"))
    return a == b + n if m.group("word").lower() == "more" else a == b - n


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def echoed(text: str, instructions: Iterable[str], *, run: int = 6) -> str | None:
    """The first run of ``run`` words that ``text`` copies from one of ``instructions`` (the system
    prompt, the tutor's decision, format templates), or None. The question itself is not an
    instruction: pass only what the model was told to do, never what it was asked about."""
    said = _words(text)
    grams = {tuple(said[i : i + run]) for i in range(len(said) - run + 1)}
    if not grams:
        return None
    for instruction in instructions:
        heard = _words(instruction)
        for i in range(len(heard) - run + 1):
            gram = tuple(heard[i : i + run])
            if gram in grams:
                return " ".join(gram)
    return None


# Words no sentence ends on: a reply that stops on one was cut off ("... the question \"What is the").
# Pronouns are left out: "You got it" ends a sentence, with or without its full stop.
_DANGLING_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an the and or but nor of to in on at for with by from into than as if so because that which who "
        "whose is are was were be been will would can could should must its their our your my",
    )
)
_DANGLING_MARKS = frozenset(",:;…(-–—“‘")
_LAST_WORD_RE = re.compile(r"([A-Za-z']+)\W*$")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_SENTENCE_WORD_RE = re.compile(r"[a-z']+|\d+(?:[.,]\d+)*")


def unfinished(text: str) -> bool:
    """Whether ``text`` stops mid-sentence, as a reply cut at its token limit does: it ends on a mark
    that something must follow (``, : ; … ( -`` or an opening quote), leaves a double quote open, or
    ends on a word no sentence ends on ("the", "and", "is", ...). A reply that simply lacks its last
    full stop ("Carry the one and you get eighty-five") is finished."""
    stripped = text.rstrip()
    if not stripped:
        return False
    if stripped[-1] in _DANGLING_MARKS or stripped.count('"') % 2:
        return True
    last = _LAST_WORD_RE.search(stripped)
    return last is not None and stripped[-1].isalpha() and last.group(1).lower() in _DANGLING_WORDS


def repeated(text: str, *, words: int = 4) -> str | None:
    """The first sentence (or line) of ``words`` or more words, numbers counted, that ``text`` writes a
    second time, or None: a weak model looping ("The answer is 3. The answer is 3."). Lines of a worked
    solution differ in their numbers or column names, so they never repeat."""
    seen: set[tuple[str, ...]] = set()
    for sentence in _SENTENCE_SPLIT_RE.split(text):
        key = tuple(_SENTENCE_WORD_RE.findall(sentence.lower()))
        if len(key) < words:
            continue
        if key in seen:
            return sentence.strip()
        seen.add(key)
    return None


def loops_or_stops(text: str) -> str | None:
    """Why ``text`` may not teach as written: it stops mid-sentence (:func:`unfinished`) or writes a
    sentence twice (:func:`repeated`); None when it does neither. The one rule for a learner's reply
    and a teaching run's explanation."""
    if unfinished(text):
        return "stops mid-sentence (cut off at its length limit)"
    again = repeated(text)
    return f"repeats itself: “{again}”" if again else None

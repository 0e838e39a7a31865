"""Checks on text a teacher model wrote, before it teaches anyone: steps, answers, echoes.

Model output is untrusted. A worked solution, explanation or hint is shown to a learner or trained
on only when it passes: every arithmetic step it writes is right (:func:`wrong_steps`), and it does
not repeat the instructions or decisions it was given (:func:`echoed`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction

_NUM = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_OP = r"[-+×x*÷/−]"
# "4 + 3 + 1 = 8", "10 ÷ 7 = 1 R 3", "47×6=282" (an operator between every pair of numbers)
_STEP_RE = re.compile(
    rf"(?<![\w.])(?P<lhs>{_NUM}(?:\s*{_OP}\s*{_NUM})+)\s*=\s*(?P<rhs>{_NUM})(?:\s*R\s*(?P<rem>\d+))?(?!\.?\d)(?!\w)"
)
_TOKEN_RE = re.compile(rf"{_NUM}|{_OP}")
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
    """Every written step ``a op b ... = c`` (also ``a ÷ b = q R r``) whose arithmetic is wrong."""
    wrong = []
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

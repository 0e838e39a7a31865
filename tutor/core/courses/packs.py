"""Built-in course packs, generated in code from a seed, with gold worked solutions.

Two packs:

- ``arithmetic``: column-method addition, subtraction, multiplication and short division with
  remainder. Skill graph::

      add_1d -> add_2d -> add_3d
                add_2d -> sub_2d -> sub_3d <- add_3d
                add_2d -> mul_1d -> mul_2d <- add_3d
                sub_2d, mul_1d -> div_remainder

  Difficulty is a level within a skill: 1 + carries (addition) or 1 + borrows (subtraction);
  the number of digits of the multiplicand (mul_1d: 1-3; mul_2d: 2-3 -> levels 1-2); the
  digits of the dividend (div_remainder: 2-3 -> levels 1-2).
- ``counting``: how many times a word appears in a list (count_short -> count_long). A small
  model can learn it with a running tally, and it shares no surface form with arithmetic, so it
  shows whether teaching one family damages another.

Rules every pack keeps (tests check them): each solution is 1-4 short steps ending with
"Answer: <gold>"; the gold answer is what :func:`solve` computes from the prompt; no prompt
appears twice in a pack, so splits are disjoint; the same seed gives the same pack; the exam
set of a skill does not depend on how many train or probe items are asked for (exam items are
drawn first, from their own random stream).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tutor.core.courses.course import SPLITS, AnswerType, Course, Exercise, Skill
from tutor.core.courses.grading import format_remainder, grade

COLUMNS = ("Ones", "Tens", "Hundreds", "Thousands")

# (prompt, answer, answer_type, solution)
Item = tuple[str, str, AnswerType, str]


class UnsolvableError(ValueError):
    """The solver cannot read the prompt (not a form the packs use)."""


@dataclass(frozen=True)
class _Family:
    skill: Skill
    levels: int
    make: Callable[[random.Random, int], Item]


# ---------------------------------------------------------------- addition


def _digits(n: int, width: int) -> list[int]:
    """Digits of ``n``, ones first, padded to ``width``."""
    return [int(c) for c in str(n).zfill(width)[::-1]]


def add_solution(a: int, b: int) -> tuple[str, int]:
    """Column addition, one line per column; returns (solution, number of carries)."""
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    lines, carry, carries = [], 0, 0
    for i in range(width):
        total = da[i] + db[i] + carry
        terms = f"{da[i]} + {db[i]}" + (f" + {carry}" if carry else "")
        if total >= 10:
            carries += 1
        if i == width - 1:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total}.")
        elif total >= 10:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total % 10}, carry 1.")
        else:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total}.")
        carry = total // 10
    lines.append(f"Answer: {a + b}")
    return "\n".join(lines), carries


def _make_add(digits: int) -> Callable[[random.Random, int], Item]:
    low, high = (1, 9) if digits == 1 else (10 ** (digits - 1), 10**digits - 1)

    def make(rng: random.Random, level: int) -> Item:
        while True:
            a, b = rng.randint(low, high), rng.randint(low, high)
            solution, carries = add_solution(a, b)
            if carries + 1 == level:
                return f"What is {a} + {b}?", str(a + b), "number", solution

    return make


# ---------------------------------------------------------------- subtraction


def sub_solution(a: int, b: int) -> tuple[str, int]:
    """Column subtraction with borrowing (``a >= b``); returns (solution, number of borrows)."""
    width = len(str(a))
    da, db = _digits(a, width), _digits(b, width)
    lines, borrow, borrows = [], 0, 0
    for i in range(width):
        top = da[i] - borrow
        shown = f"{da[i]} - 1" if borrow else f"{da[i]}"
        if top < db[i]:
            borrows += 1
            minuend = f"{10 + da[i]} - 1" if borrow else f"{10 + da[i]}"
            result = top + 10 - db[i]
            lines.append(f"{COLUMNS[i]}: {shown} < {db[i]}, so borrow: {minuend} - {db[i]} = {result}.")
            borrow = 1
        else:
            lines.append(f"{COLUMNS[i]}: {shown} - {db[i]} = {top - db[i]}.")
            borrow = 0
    lines.append(f"Answer: {a - b}")
    return "\n".join(lines), borrows


def _make_sub(digits: int) -> Callable[[random.Random, int], Item]:
    low, high = 10 ** (digits - 1), 10**digits - 1

    def make(rng: random.Random, level: int) -> Item:
        while True:
            a, b = sorted((rng.randint(low, high), rng.randint(low, high)), reverse=True)
            solution, borrows = sub_solution(a, b)
            if borrows + 1 == level:
                return f"What is {a} - {b}?", str(a - b), "number", solution

    return make


# ---------------------------------------------------------------- multiplication


def mul_1d_solution(a: int, b: int) -> str:
    """``a`` times a one-digit ``b``, column by column from the ones."""
    if a < 10:
        return f"{a} × {b} = {a * b}.\nAnswer: {a * b}"
    da = _digits(a, len(str(a)))
    lines, carry = [], 0
    for i, digit in enumerate(da):
        total = digit * b + carry
        terms = f"{digit} × {b}" + (f" + {carry}" if carry else "")
        if i == len(da) - 1:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total}.")
        elif total >= 10:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total % 10}, carry {total // 10}.")
        else:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total}.")
        carry = total // 10
    lines.append(f"Answer: {a * b}")
    return "\n".join(lines)


def mul_2d_solution(a: int, b: int) -> str:
    """``a`` times a two-digit ``b`` by partial products: ones, tens, then their sum."""
    ones, tens = b % 10, b - b % 10
    return (
        f"{a} × {ones} = {a * ones}.\n{a} × {tens} = {a * tens}.\n"
        f"{a * ones} + {a * tens} = {a * b}.\nAnswer: {a * b}"
    )


def _make_mul_1d(rng: random.Random, level: int) -> Item:
    low, high = (2, 9) if level == 1 else (10 ** (level - 1), 10**level - 1)
    a, b = rng.randint(low, high), rng.randint(2, 9)
    return f"What is {a} × {b}?", str(a * b), "number", mul_1d_solution(a, b)


def _make_mul_2d(rng: random.Random, level: int) -> Item:
    a = rng.randint(10**level, 10 ** (level + 1) - 1)
    b = rng.choice([n for n in range(12, 100) if n % 10])  # a zero ones digit makes a 0 step
    return f"What is {a} × {b}?", str(a * b), "number", mul_2d_solution(a, b)


# ---------------------------------------------------------------- division with remainder


def div_solution(a: int, b: int) -> str:
    """Short division of ``a`` by a one-digit ``b``, one line per step, ending "Answer: q R r"."""
    lines, remainder, started = [], 0, False
    digits = str(a)
    for i, digit in enumerate(digits):
        current = remainder * 10 + int(digit)
        if not started and current < b and i < len(digits) - 1:
            remainder = current  # take the next digit too, as in long division
            continue
        started = True
        quotient_digit, remainder = divmod(current, b)
        lines.append(f"{current} ÷ {b} = {quotient_digit} R {remainder}.")
    q, r = divmod(a, b)
    lines.append(f"Answer: {format_remainder(q, r)}")
    return "\n".join(lines)


def _make_div(rng: random.Random, level: int) -> Item:
    while True:
        a, b = rng.randint(10**level, 10 ** (level + 1) - 1), rng.randint(2, 9)
        if a % b:  # a remainder of 0 would make the "R" format pointless
            break
    prompt = f"What is {a} ÷ {b}? Answer as quotient R remainder."
    return prompt, format_remainder(*divmod(a, b)), "text", div_solution(a, b)


# ---------------------------------------------------------------- counting

WORDS = (
    "apple",
    "pear",
    "plum",
    "fig",
    "kiwi",
    "lime",
    "grape",
    "mango",
    "peach",
    "lemon",
    "cat",
    "dog",
    "cow",
    "hen",
    "fox",
    "owl",
    "bee",
    "ant",
    "pig",
    "yak",
)


def count_solution(target: str, items: list[str]) -> str:
    """A running tally over the list: the one procedure that scales to any length."""
    tally, shown = 0, []
    for item in items:
        if item == target:
            tally += 1
            shown.append(f"{item} ({tally})")
        else:
            shown.append(item)
    times = "time" if tally == 1 else "times"
    ending = f'So "{target}" appears {tally} {times}.' if tally else f'"{target}" does not appear.'
    return f"Tally: {', '.join(shown)}.\n{ending}\nAnswer: {tally}"


def _make_count(lengths: tuple[tuple[int, int], ...]) -> Callable[[random.Random, int], Item]:
    def make(rng: random.Random, level: int) -> Item:
        low, high = lengths[level - 1]
        n = rng.randint(low, high)
        target, *others = rng.sample(WORDS, 4)
        count = rng.randint(0, min(5, n - 1))
        items = [target] * count + [rng.choice(others) for _ in range(n - count)]
        rng.shuffle(items)
        prompt = f'How many times does "{target}" appear in this list? {", ".join(items)}'
        return prompt, str(count), "number", count_solution(target, items)

    return make


# ---------------------------------------------------------------- packs


def _skill(key: str, name: str, description: str, *prerequisites: str) -> Skill:
    return Skill(key=key, name=name, description=description, prerequisites=tuple(prerequisites))


ARITHMETIC_FAMILIES = (
    _Family(_skill("add_1d", "Add one-digit numbers", "a + b with one-digit a and b"), 2, _make_add(1)),
    _Family(
        _skill("add_2d", "Add two-digit numbers", "column addition with carries", "add_1d"), 3, _make_add(2)
    ),
    _Family(
        _skill("add_3d", "Add three-digit numbers", "column addition with carries", "add_2d"), 4, _make_add(3)
    ),
    _Family(
        _skill("sub_2d", "Subtract two-digit numbers", "column subtraction with borrowing", "add_2d"),
        2,
        _make_sub(2),
    ),
    _Family(
        _skill(
            "sub_3d", "Subtract three-digit numbers", "column subtraction with borrowing", "sub_2d", "add_3d"
        ),
        3,
        _make_sub(3),
    ),
    _Family(
        _skill(
            "mul_1d", "Multiply by a one-digit number", "times tables, then column multiplication", "add_2d"
        ),
        3,
        _make_mul_1d,
    ),
    _Family(
        _skill(
            "mul_2d", "Multiply by a two-digit number", "partial products, then their sum", "mul_1d", "add_3d"
        ),
        2,
        _make_mul_2d,
    ),
    _Family(
        _skill(
            "div_remainder",
            "Divide with remainder",
            "short division by a one-digit number",
            "mul_1d",
            "sub_2d",
        ),
        2,
        _make_div,
    ),
)

COUNTING_FAMILIES = (
    _Family(
        _skill("count_short", "Count in a short list", "how often a word appears in 3-6 words"),
        2,
        _make_count(((3, 4), (5, 6))),
    ),
    _Family(
        _skill("count_long", "Count in a long list", "how often a word appears in 7-12 words", "count_short"),
        2,
        _make_count(((7, 9), (10, 12))),
    ),
)


def _split_sizes(per_skill_per_split: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(per_skill_per_split, Mapping):
        unknown = set(per_skill_per_split) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}")
        sizes = {split: per_skill_per_split.get(split, 0) for split in SPLITS}
    else:
        sizes = dict.fromkeys(SPLITS, per_skill_per_split)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in sizes.values()):
        raise ValueError(f"item counts must be integers >= 0, not {sizes}")
    return sizes


def _build(
    key: str,
    name: str,
    families: tuple[_Family, ...],
    seed: int,
    per_skill_per_split: int | Mapping[str, int],
) -> Course:
    sizes = _split_sizes(per_skill_per_split)
    exercises: list[Exercise] = []
    used: set[str] = set()
    for family in families:
        # Exam first, from its own stream: the exam never changes when train grows.
        for split in ("exam", "probe", "train"):
            rng = random.Random(f"{key}:{seed}:{family.skill.key}:{split}")
            for i in range(sizes[split]):
                level = i % family.levels + 1  # levels evenly spread
                for _ in range(5000):
                    prompt, answer, answer_type, solution = family.make(rng, level)
                    if prompt not in used:
                        break
                else:
                    raise ValueError(
                        f"{family.skill.key}: cannot find {sizes[split]} new {split} items at level {level};"
                        " ask for fewer items per split"
                    )
                used.add(prompt)
                exercises.append(
                    Exercise(
                        key=f"{family.skill.key}-{split}-{i:03d}",
                        skill=family.skill.key,
                        prompt=prompt,
                        answer=answer,
                        answer_type=answer_type,
                        solution=solution,
                        difficulty=level,
                        split=split,
                    )
                )
    return Course(key=key, name=name, skills=tuple(f.skill for f in families), exercises=tuple(exercises))


def arithmetic_pack(seed: int = 0, per_skill_per_split: int | Mapping[str, int] = 20) -> Course:
    """Multi-digit arithmetic; ``per_skill_per_split`` is a count or ``{"train": 60, ...}``."""
    return _build("arithmetic", "Multi-digit arithmetic", ARITHMETIC_FAMILIES, seed, per_skill_per_split)


def counting_pack(seed: int = 0, per_skill_per_split: int | Mapping[str, int] = 20) -> Course:
    """Counting how often a word appears in a list."""
    return _build("counting", "Counting in lists", COUNTING_FAMILIES, seed, per_skill_per_split)


PACKS: dict[str, Callable[..., Course]] = {"arithmetic": arithmetic_pack, "counting": counting_pack}


def load_pack(name: str, seed: int = 0, **options: object) -> Course:
    """A built-in pack by name; extra options go to the pack (``per_skill_per_split``)."""
    if name not in PACKS:
        raise KeyError(f"unknown pack {name!r}; the packs are {', '.join(sorted(PACKS))}")
    return PACKS[name](seed=seed, **options)


# ---------------------------------------------------------------- solver

_NUMBER = r"(-?\d[\d,]*)"
_OPERATORS = {
    "+": "+",
    "plus": "+",
    "-": "-",
    "−": "-",
    "minus": "-",
    "×": "*",
    "x": "*",
    "*": "*",
    "times": "*",
    "multiplied by": "*",
    "÷": "/",
    "/": "/",
    "divided by": "/",
}
_BINARY_RE = re.compile(
    rf"{_NUMBER}\s*(multiplied by|divided by|plus|minus|times|[-−+×x*÷/])\s*{_NUMBER}",
    re.IGNORECASE,
)
_WORDED = [
    (re.compile(rf"subtract\s+{_NUMBER}\s+from\s+{_NUMBER}", re.I), lambda a, b: ("-", b, a)),
    (re.compile(rf"(?:sum of|add)\s+{_NUMBER}\s+(?:and|to)\s+{_NUMBER}", re.I), lambda a, b: ("+", a, b)),
    (re.compile(rf"product of\s+{_NUMBER}\s+and\s+{_NUMBER}", re.I), lambda a, b: ("*", a, b)),
    (re.compile(rf"divide\s+{_NUMBER}\s+by\s+{_NUMBER}", re.I), lambda a, b: ("/", a, b)),
]
_COUNT_TARGET_RE = re.compile(
    r"how many times does\s+(?:the word\s+)?[\"'“‘]?([\w-]+)[\"'”’]?\s+(?:appear|occur)",
    re.IGNORECASE,
)


def solve(exercise: Exercise | str) -> str:
    """The gold answer of a pack-style item, computed from its prompt (an Exercise or a prompt).

    Reads "What is 47 + 38?", "47 plus 38", "subtract 29 from 83", "47 x 6", "100 ÷ 7",
    "divide 100 by 7" and "How many times does "apple" appear in this list? ...". A division
    answers in the remainder form "14 R 2". Raises :class:`UnsolvableError` otherwise; that is
    how teacher-generated items that the code cannot check are told apart from wrong ones.
    """
    prompt = exercise if isinstance(exercise, str) else exercise.prompt
    target = _COUNT_TARGET_RE.search(prompt)
    if target:
        return str(_count(prompt, target.group(1)))
    parsed = _parse_arithmetic(prompt)
    if parsed is None:
        raise UnsolvableError(f"cannot read an arithmetic or counting question in {prompt!r}")
    op, a, b = parsed
    if op == "+":
        return str(a + b)
    if op == "-":
        return str(a - b)
    if op == "*":
        return str(a * b)
    if b <= 0 or a < 0:
        raise UnsolvableError("division with remainder needs a >= 0 and b > 0")
    return format_remainder(*divmod(a, b))


def _parse_arithmetic(prompt: str) -> tuple[str, int, int] | None:
    for pattern, order in _WORDED:
        m = pattern.search(prompt)
        if m:
            return order(int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
    m = _BINARY_RE.search(prompt)
    if not m:
        return None
    return _OPERATORS[m.group(2).lower()], int(m.group(1).replace(",", "")), int(m.group(3).replace(",", ""))


def _count(prompt: str, target: str) -> int:
    # The list is the part of the prompt with the most commas (after a "?" or ":" or on its own line).
    parts = re.split(r"[?:\n]", prompt)
    listed = max(parts, key=lambda part: part.count(","))
    if "," not in listed:
        raise UnsolvableError(f"no comma-separated list in {prompt!r}")
    items = [item.strip(" .\"'“”‘’").casefold() for item in listed.split(",")]
    return sum(item == target.casefold() for item in items)


def verify(exercise: Exercise) -> bool | None:
    """Whether a (teacher-generated) item's gold answer is right: True / False, or None when the
    solver cannot read the prompt and the item cannot be checked by code."""
    try:
        answer = solve(exercise)
    except UnsolvableError:
        return None
    return grade(exercise, f"Answer: {answer}").correct

"""Built-in course packs, generated in code from a seed, with gold worked solutions.

- ``arithmetic``: column addition, subtraction, multiplication and short division with remainder::

      add_1d -> add_2d -> add_3d
                add_2d -> sub_2d -> sub_3d <- add_3d
                add_2d -> mul_1d -> mul_2d <- add_3d
                sub_2d, mul_1d -> div_remainder

  plus three *keep* skills next to it that the bundled student half-knows and the course never
  teaches, only watches: exact division, the larger of two numbers, half of a number.
  Difficulty is a level within a skill: 1 + carries (addition), 1 + borrows (subtraction), the
  digits of the multiplicand or dividend (multiplication, division).
- ``counting``: how many times a word appears in a list (count_short -> count_long).

Rules every pack keeps (tests check them): every item is asked in one of its operation's
phrasings (:mod:`.phrasings`); train items only in training phrasings, probe and exam items half in
training and half in held-out phrasings; each solution restates the question in symbols, works it
in short steps and ends with "Answer: <gold>"; the gold answer is what :func:`solve` computes from
the prompt; no prompt appears twice, so splits are disjoint; the same seed gives the same pack; a
skill's exam items do not depend on how many train or probe items are asked for.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tutor.core.courses.course import SPLITS, AnswerType, Course, Exercise, Skill
from tutor.core.courses.grading import REMAINDER_RE, format_remainder, grade
from tutor.core.courses.phrasings import Phrasing, phrasings_for, read

COLUMNS = ("Ones", "Tens", "Hundreds", "Thousands")

Operands = tuple[int, int]


class UnsolvableError(ValueError):
    """The solver cannot read the prompt (not a form the packs use)."""


@dataclass(frozen=True)
class Family:
    """A skill of a pack: its operation, how many levels, and operands for a level."""

    skill: Skill
    levels: int
    op: str
    operands: Callable[[random.Random, int], Operands]


# ---------------------------------------------------------------- worked solutions


def _digits(n: int, width: int) -> list[int]:
    """Digits of ``n``, ones first, padded to ``width``."""
    return [int(c) for c in str(n).zfill(width)[::-1]]


def add_solution(a: int, b: int) -> tuple[str, int]:
    """Column addition, one line per column; returns (solution, number of carries)."""
    if a < 10 and b < 10:
        return f"{a} + {b} = {a + b}.\nAnswer: {a + b}", int(a + b >= 10)
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    lines, carry, carries = [f"{a} + {b}:"], 0, 0
    for i in range(width):
        total = da[i] + db[i] + carry
        terms = f"{da[i]} + {db[i]}" + (f" + {carry}" if carry else "")
        carries += total >= 10
        if i == width - 1 or total < 10:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total}.")
        else:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total % 10}, carry 1.")
        carry = total // 10
    lines += [f"So {a} + {b} = {a + b}.", f"Answer: {a + b}"]
    return "\n".join(lines), carries


def sub_solution(a: int, b: int) -> tuple[str, int]:
    """Column subtraction with borrowing (``a >= b``); returns (solution, number of borrows)."""
    width = len(str(a))
    da, db = _digits(a, width), _digits(b, width)
    lines, borrow, borrows = [f"{a} - {b}:"], 0, 0
    for i in range(width):
        top = da[i] - borrow
        shown = f"{da[i]} - 1" if borrow else f"{da[i]}"
        if top < db[i]:
            borrows += 1
            minuend = f"{10 + da[i]} - 1" if borrow else f"{10 + da[i]}"
            lines.append(
                f"{COLUMNS[i]}: {shown} < {db[i]}, so borrow: {minuend} - {db[i]} = {top + 10 - db[i]}."
            )
            borrow = 1
        else:
            lines.append(f"{COLUMNS[i]}: {shown} - {db[i]} = {top - db[i]}.")
            borrow = 0
    lines += [f"So {a} - {b} = {a - b}.", f"Answer: {a - b}"]
    return "\n".join(lines), borrows


def mul_1d_solution(a: int, b: int) -> str:
    """``a`` times a one-digit ``b``, column by column from the ones."""
    if a < 10:
        return f"{a} × {b} = {a * b}.\nAnswer: {a * b}"
    da = _digits(a, len(str(a)))
    lines, carry = [f"{a} × {b}:"], 0
    for i, digit in enumerate(da):
        total = digit * b + carry
        terms = f"{digit} × {b}" + (f" + {carry}" if carry else "")
        if i == len(da) - 1 or total < 10:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total}.")
        else:
            lines.append(f"{COLUMNS[i]}: {terms} = {total}, write {total % 10}, carry {total // 10}.")
        carry = total // 10
    lines += [f"So {a} × {b} = {a * b}.", f"Answer: {a * b}"]
    return "\n".join(lines)


def mul_2d_solution(a: int, b: int) -> str:
    """``a`` times a two-digit ``b`` by partial products: ones, tens, then their sum."""
    ones, tens = b % 10, b - b % 10
    return (
        f"{a} × {b}:\n{a} × {ones} = {a * ones}.\n{a} × {tens} = {a * tens}.\n"
        f"{a * ones} + {a * tens} = {a * b}.\nAnswer: {a * b}"
    )


def div_solution(a: int, b: int) -> str:
    """Short division of ``a`` by a one-digit ``b``, one line per step, ending "Answer: q R r"."""
    lines, remainder, started = [f"{a} ÷ {b}:"], 0, False
    digits = str(a)
    for i, digit in enumerate(digits):
        current = remainder * 10 + int(digit)
        if not started and current < b and i < len(digits) - 1:
            remainder = current  # take the next digit too, as in long division
            continue
        started = True
        quotient_digit, remainder = divmod(current, b)
        lines.append(f"{current} ÷ {b} = {quotient_digit} R {remainder}.")
    answer = format_remainder(*divmod(a, b))
    lines += [f"So {a} ÷ {b} = {answer}.", f"Answer: {answer}"]
    return "\n".join(lines)


def count_solution(target: str, items: list[str] | tuple[str, ...]) -> str:
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


def answer_of(op: str, a: int, b: int) -> tuple[str, AnswerType]:
    """The gold answer of ``a op b`` in its stored form, and its answer type."""
    if op == "+":
        return str(a + b), "number"
    if op == "-":
        return str(a - b), "number"
    if op == "*":
        return str(a * b), "number"
    if op in ("/", "/=") and (b <= 0 or a < 0):
        raise UnsolvableError("division needs a >= 0 and b > 0")
    if op == "/":
        return format_remainder(*divmod(a, b)), "text"
    if op == "/=":
        if a % b:
            raise UnsolvableError(f"{a} ÷ {b} is not exact")
        return str(a // b), "number"
    if op == "max":
        return str(max(a, b)), "number"
    if op == "half":
        if a % 2:
            raise UnsolvableError(f"{a} is odd")
        return str(a // 2), "number"
    raise UnsolvableError(f"unknown operation {op!r}")


def solution_of(op: str, a: int, b: int) -> str:
    """The gold worked solution of ``a op b``."""
    if op == "+":
        return add_solution(a, b)[0]
    if op == "-":
        return sub_solution(a, b)[0]
    if op == "*":
        return mul_1d_solution(a, b) if b < 10 else mul_2d_solution(a, b)
    if op == "/":
        return div_solution(a, b)
    answer, _ = answer_of(op, a, b)
    if op == "/=":
        return f"{a} ÷ {b} = {answer}.\nAnswer: {answer}"
    if op == "max":
        return f"{answer} is larger than {min(a, b)}.\nAnswer: {answer}"
    return f"Half of {a} is {a} ÷ 2 = {answer}.\nAnswer: {answer}"


# ---------------------------------------------------------------- operands per skill and level


def _add_operands(digits: int) -> Callable[[random.Random, int], Operands]:
    low, high = (1, 9) if digits == 1 else (10 ** (digits - 1), 10**digits - 1)

    def operands(rng: random.Random, level: int) -> Operands:
        while True:
            a, b = rng.randint(low, high), rng.randint(low, high)
            if add_solution(a, b)[1] + 1 == level:
                return a, b

    return operands


def _sub_operands(digits: int) -> Callable[[random.Random, int], Operands]:
    low, high = 10 ** (digits - 1), 10**digits - 1

    def operands(rng: random.Random, level: int) -> Operands:
        while True:
            a, b = sorted((rng.randint(low, high), rng.randint(low, high)), reverse=True)
            if sub_solution(a, b)[1] + 1 == level:
                return a, b

    return operands


def _mul_1d_operands(rng: random.Random, level: int) -> Operands:
    low, high = (2, 9) if level == 1 else (10 ** (level - 1), 10**level - 1)
    return rng.randint(low, high), rng.randint(2, 9)


def _mul_2d_operands(rng: random.Random, level: int) -> Operands:
    a = rng.randint(10**level, 10 ** (level + 1) - 1)
    return a, rng.choice([n for n in range(12, 100) if n % 10])  # a zero ones digit makes a 0 step


def _div_operands(rng: random.Random, level: int) -> Operands:
    while True:
        a, b = rng.randint(10**level, 10 ** (level + 1) - 1), rng.randint(2, 9)
        if a % b:  # a remainder of 0 would make the "R" format pointless
            return a, b


def _div_exact_operands(rng: random.Random, level: int) -> Operands:
    b = rng.randint(3, 9)  # not 2: "divided by 2" is a way to ask for half
    return b * rng.randint(2, 11), b


def _max_operands(rng: random.Random, level: int) -> Operands:
    a, b = rng.sample(range(10, 100), 2)
    return a, b


def _half_operands(rng: random.Random, level: int) -> Operands:
    return 2 * (rng.randint(1, 25) if level == 1 else rng.randint(26, 49)), 0


# ---------------------------------------------------------------- counting

WORDS = ("apple", "pear", "plum", "fig", "kiwi", "lime", "grape", "mango", "peach", "lemon",
         "cat", "dog", "cow", "hen", "fox", "owl", "bee", "ant", "pig", "yak")  # fmt: skip


def _count_operands(lengths: tuple[tuple[int, int], ...]) -> Callable[[random.Random, int], Operands]:
    """Counting items are made by :func:`_count_item`; this only fixes the list length per level."""

    def operands(rng: random.Random, level: int) -> Operands:
        return lengths[level - 1]

    return operands


def _count_item(rng: random.Random, low: int, high: int) -> tuple[str, list[str], int]:
    n = rng.randint(low, high)
    target, *others = rng.sample(WORDS, 4)
    count = rng.randint(0, min(5, n - 1))
    items = [target] * count + [rng.choice(others) for _ in range(n - count)]
    rng.shuffle(items)
    return target, items, count


# ---------------------------------------------------------------- families and packs


def _skill(key: str, name: str, description: str, *prerequisites: str, keep: bool = False) -> Skill:
    return Skill(key=key, name=name, description=description, prerequisites=tuple(prerequisites), keep=keep)


ARITHMETIC_FAMILIES = (
    Family(
        _skill("add_1d", "Add one-digit numbers", "a + b with one-digit a and b"), 2, "+", _add_operands(1)
    ),
    Family(
        _skill("add_2d", "Add two-digit numbers", "column addition with carries", "add_1d"),
        3,
        "+",
        _add_operands(2),
    ),
    Family(
        _skill("add_3d", "Add three-digit numbers", "column addition with carries", "add_2d"),
        4,
        "+",
        _add_operands(3),
    ),
    Family(
        _skill("sub_2d", "Subtract two-digit numbers", "column subtraction with borrowing", "add_2d"),
        2,
        "-",
        _sub_operands(2),
    ),
    Family(
        _skill(
            "sub_3d", "Subtract three-digit numbers", "column subtraction with borrowing", "sub_2d", "add_3d"
        ),
        3,
        "-",
        _sub_operands(3),
    ),
    Family(
        _skill(
            "mul_1d", "Multiply by a one-digit number", "times tables, then column multiplication", "add_2d"
        ),
        3,
        "*",
        _mul_1d_operands,
    ),
    Family(
        _skill(
            "mul_2d", "Multiply by a two-digit number", "partial products, then their sum", "mul_1d", "add_3d"
        ),
        2,
        "*",
        _mul_2d_operands,
    ),
    Family(
        _skill(
            "div_remainder",
            "Divide with remainder",
            "short division by a one-digit number",
            "mul_1d",
            "sub_2d",
        ),
        2,
        "/",
        _div_operands,
    ),
    Family(
        _skill("div_exact", "Divide exactly", "times tables backwards (kept, not taught)", keep=True),
        1,
        "/=",
        _div_exact_operands,
    ),
    Family(
        _skill("compare", "The larger of two numbers", "two-digit numbers (kept, not taught)", keep=True),
        1,
        "max",
        _max_operands,
    ),
    Family(
        _skill("half", "Half of a number", "even numbers up to 98 (kept, not taught)", keep=True),
        2,
        "half",
        _half_operands,
    ),
)

COUNTING_FAMILIES = (
    Family(
        _skill("count_short", "Count in a short list", "how often a word appears in 3-6 words"),
        2,
        "count",
        _count_operands(((3, 4), (5, 6))),
    ),
    Family(
        _skill("count_long", "Count in a long list", "how often a word appears in 7-12 words", "count_short"),
        2,
        "count",
        _count_operands(((7, 9), (10, 12))),
    ),
)

FAMILIES: dict[str, Family] = {f.skill.key: f for f in (*ARITHMETIC_FAMILIES, *COUNTING_FAMILIES)}
# (prompt, answer, answer_type, solution, phrasing key)
Item = tuple[str, str, AnswerType, str, Phrasing]


def make_item(family: Family, rng: random.Random, level: int, phrasing: Phrasing) -> Item:
    """One item of ``family`` at ``level`` asked in ``phrasing``, with its answer and worked solution."""
    if family.op == "count":
        low, high = family.operands(rng, level)
        target, items, count = _count_item(rng, low, high)
        prompt = phrasing.render(rng, target=target, items=items)
        return prompt, str(count), "number", count_solution(target, items), phrasing
    a, b = family.operands(rng, level)
    answer, answer_type = answer_of(family.op, a, b)
    return phrasing.render(rng, a=a, b=b), answer, answer_type, solution_of(family.op, a, b), phrasing


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


def _phrasing_for(family: Family, split: str, i: int, rng: random.Random) -> Phrasing:
    """Train items: a training phrasing; probe and exam items: alternately training and held out."""
    held_out = split != "train" and i % 2 == 1
    return rng.choice(phrasings_for(family.op, held_out=held_out))


def build_pack(
    key: str,
    name: str,
    families: tuple[Family, ...],
    seed: int,
    per_skill_per_split: int | Mapping[str, int],
    expert: str = "",
) -> Course:
    """A course of ``families`` with ``per_skill_per_split`` items (a count, or per split)."""
    sizes = _split_sizes(per_skill_per_split)
    exercises: list[Exercise] = []
    used: set[str] = set()
    for family in families:
        # Exam first, from its own stream: the exam never changes when train grows.
        for split in ("exam", "probe", "train"):
            rng = random.Random(f"{key}:{seed}:{family.skill.key}:{split}")
            for i in range(sizes[split]):
                level = (i // 2 if split != "train" else i) % family.levels + 1  # levels evenly spread
                for _ in range(5000):
                    prompt, answer, answer_type, solution, phrasing = make_item(
                        family, rng, level, _phrasing_for(family, split, i, rng)
                    )
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
                        phrasing=phrasing.key,
                        held_out=phrasing.held_out,
                    )
                )
    return Course(
        key=key,
        name=name,
        skills=tuple(f.skill for f in families),
        exercises=tuple(exercises),
        expert=expert,
    )


def arithmetic_pack(seed: int = 0, per_skill_per_split: int | Mapping[str, int] = 20) -> Course:
    """Multi-digit arithmetic; ``per_skill_per_split`` is a count or ``{"train": 60, ...}``."""
    return build_pack(
        "arithmetic", "Multi-digit arithmetic", ARITHMETIC_FAMILIES, seed, per_skill_per_split, "arithmetic"
    )


def counting_pack(seed: int = 0, per_skill_per_split: int | Mapping[str, int] = 20) -> Course:
    """Counting how often a word appears in a list."""
    return build_pack(
        "counting", "Counting in lists", COUNTING_FAMILIES, seed, per_skill_per_split, "counting"
    )


PACKS: dict[str, Callable[..., Course]] = {"arithmetic": arithmetic_pack, "counting": counting_pack}


def load_pack(name: str, seed: int = 0, **options: object) -> Course:
    """A built-in pack by name; extra options go to the pack (``per_skill_per_split``)."""
    if name not in PACKS:
        raise KeyError(f"unknown pack {name!r}; the packs are {', '.join(sorted(PACKS))}")
    return PACKS[name](seed=seed, **options)


# ---------------------------------------------------------------- solver

_NUMBER = r"(-?\d[\d,]*)"
OPERATORS = {  # a written operator -> the operation it names
    "+": "+", "plus": "+", "-": "-", "−": "-", "minus": "-", "×": "*", "x": "*", "*": "*",
    "times": "*", "multiplied by": "*", "÷": "/", "/": "/", "divided by": "/",
}  # fmt: skip
_BINARY_RE = re.compile(
    rf"{_NUMBER}\s*(multiplied by|divided by|plus|minus|times|[-−+×x*÷/])\s*{_NUMBER}", re.IGNORECASE
)
_WORDED = [
    (re.compile(rf"subtract\s+{_NUMBER}\s+from\s+{_NUMBER}", re.I), lambda a, b: ("-", b, a)),
    (re.compile(rf"(?:sum of|add)\s+{_NUMBER}\s+(?:and|to)\s+{_NUMBER}", re.I), lambda a, b: ("+", a, b)),
    (re.compile(rf"product of\s+{_NUMBER}\s+and\s+{_NUMBER}", re.I), lambda a, b: ("*", a, b)),
    (re.compile(rf"divide\s+{_NUMBER}\s+by\s+{_NUMBER}", re.I), lambda a, b: ("/", a, b)),
]
_COUNT_TARGET_RE = re.compile(
    r"how many times does\s+(?:the word\s+)?[\"'“‘]?([\w-]+)[\"'”’]?\s+(?:appear|occur)", re.IGNORECASE
)


def solve(exercise: Exercise | str) -> str:
    """The gold answer of a pack-style item, computed from its prompt (an Exercise or a prompt).

    Reads every phrasing of :mod:`.phrasings` exactly, and otherwise the common forms a teacher
    writes ("47 plus 38", "subtract 29 from 83", "47 x 6", "divide 100 by 7", "How many times does
    "apple" appear in this list? ..."); a division answers "14 R 2" unless it is one of the exact
    phrasings. Raises :class:`UnsolvableError` otherwise: that is how items the code cannot check
    are told apart from wrong ones.
    """
    prompt = exercise if isinstance(exercise, str) else exercise.prompt
    # A division answers in the remainder form unless it is exact and not asked in that form.
    remainder = not isinstance(exercise, str) and REMAINDER_RE.match(exercise.answer) is not None
    reading = read(prompt)
    if reading is not None:
        op, a, b = reading.phrasing.op, reading.a, reading.b
        if op == "count":
            return str(sum(i.casefold() == reading.target.casefold() for i in reading.items))
        if op == "/=" and (remainder or (b and a % b)):
            op = "/"
        return answer_of(op, a, b)[0]
    target = _COUNT_TARGET_RE.search(prompt)
    if target:
        return str(_count(prompt, target.group(1)))
    parsed = _parse_arithmetic(prompt)
    if parsed is None:
        raise UnsolvableError(f"cannot read an arithmetic or counting question in {prompt!r}")
    op, a, b = parsed
    return answer_of(op, a, b)[0]  # "/": the remainder form


def _parse_arithmetic(prompt: str) -> tuple[str, int, int] | None:
    for pattern, order in _WORDED:
        m = pattern.search(prompt)
        if m:
            return order(int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
    m = _BINARY_RE.search(prompt)
    if not m:
        return None
    return OPERATORS[m.group(2).lower()], int(m.group(1).replace(",", "")), int(m.group(3).replace(",", ""))


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

"""The wordings a pack asks its questions in, and reading a question back to its operation.

Every pack skill is asked in several phrasings (symbols, words, short word problems). Some are
*held out*: they appear only in the probe and exam splits, never in training data, so the exam can
tell a student that learned the skill from one that learned the template. A phrasing renders from
its operands and reads back with :func:`read`, which is how the expert checks a question a teacher
wrote, including whether it uses a held-out phrasing.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property

NAMES = ("Sam", "Mia", "Leo", "Ava", "Noah", "Zoe", "Omar", "Lena", "Ravi", "Kim")
THINGS = ("apples", "stickers", "marbles", "cards", "coins", "shells", "stamps", "beads", "pencils", "books")
REMAINDER_ASK = "Answer as quotient R remainder."

_SLOTS = {
    "a": r"(?P<a>-?\d[\d,]*)",
    "b": r"(?P<b>-?\d[\d,]*)",
    "name": r"(?P<name>[A-Z][a-z]+)",
    "things": r"(?P<things>[a-z]+)",
    "target": r"(?P<target>[\w-]+)",
    "items": r"(?P<items>[\w-]+(?:, [\w-]+)+)",
}


@dataclass(frozen=True)
class Phrasing:
    """One wording of one operation; ``held_out`` ones are for the probe and the exam only."""

    key: str
    op: str  # "+", "-", "*", "/" (with remainder), "/=" (exact), "max", "half", "count"
    template: str
    held_out: bool = False

    def render(self, rng: random.Random, **operands: object) -> str:
        fill = {"name": rng.choice(NAMES), "things": rng.choice(THINGS), **operands}
        if "items" in fill and not isinstance(fill["items"], str):
            fill["items"] = ", ".join(fill["items"])  # type: ignore[arg-type]
        return self.template.format(**fill)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        seen: set[str] = set()
        regex = ""
        for part in re.split(r"(\{\w+\})", self.template):
            slot = part[1:-1] if part.startswith("{") else ""
            if slot in seen:
                regex += f"(?P={slot})"  # the same name or thing again
            elif slot:
                regex += _SLOTS[slot]
                seen.add(slot)
            else:  # literal words, spaced loosely ("47+38" reads like "47 + 38")
                regex += r"\s*" + r"\s*".join(map(re.escape, part.split())) + r"\s*"
        return re.compile(rf"\s*{regex}\s*", re.IGNORECASE)


def _p(key: str, op: str, template: str, held_out: bool = False) -> Phrasing:
    return Phrasing(key, op, template, held_out)


PHRASINGS: tuple[Phrasing, ...] = (
    # addition
    _p("add.symbols", "+", "What is {a} + {b}?"),
    _p("add.plus", "+", "What is {a} plus {b}?"),
    _p("add.sum", "+", "What is the sum of {a} and {b}?"),
    _p("add.add", "+", "Add {a} and {b}."),
    _p("add.calculate", "+", "Calculate {a} + {b}."),
    _p(
        "add.story", "+", "{name} has {a} {things} and gets {b} more. How many {things} does {name} have now?"
    ),
    _p("add.increased", "+", "What number is {b} more than {a}?", held_out=True),
    _p("add.together", "+", "If you put {a} and {b} together, how many do you have?", held_out=True),
    # subtraction
    _p("sub.symbols", "-", "What is {a} - {b}?"),
    _p("sub.minus", "-", "What is {a} minus {b}?"),
    _p("sub.difference", "-", "What is the difference between {a} and {b}?"),
    _p("sub.subtract", "-", "Subtract {b} from {a}."),
    _p("sub.calculate", "-", "Calculate {a} - {b}."),
    _p("sub.story", "-", "{name} had {a} {things} and gave away {b}. How many {things} are left?"),
    _p("sub.less", "-", "What number is {b} less than {a}?", held_out=True),
    _p("sub.take_away", "-", "Take {b} away from {a}. What is left?", held_out=True),
    # multiplication
    _p("mul.symbols", "*", "What is {a} × {b}?"),
    _p("mul.times", "*", "What is {a} times {b}?"),
    _p("mul.product", "*", "What is the product of {a} and {b}?"),
    _p("mul.multiply", "*", "Multiply {a} by {b}."),
    _p("mul.calculate", "*", "Calculate {a} x {b}."),
    _p("mul.story", "*", "There are {a} bags with {b} {things} in each. How many {things} are there in all?"),
    _p("mul.multiplied", "*", "What do you get when {a} is multiplied by {b}?", held_out=True),
    _p("mul.groups", "*", "How much is {b} groups of {a}?", held_out=True),
    # division with remainder
    _p("div.symbols", "/", f"What is {{a}} ÷ {{b}}? {REMAINDER_ASK}"),
    _p("div.divided", "/", f"What is {{a}} divided by {{b}}? {REMAINDER_ASK}"),
    _p("div.divide", "/", f"Divide {{a}} by {{b}}. {REMAINDER_ASK}"),
    _p("div.calculate", "/", f"Calculate {{a}} / {{b}}. {REMAINDER_ASK}"),
    _p(
        "div.story",
        "/",
        f"{{name}} shares {{a}} {{things}} equally among {{b}} friends. How many does each friend get, and "
        f"how many are left over? {REMAINDER_ASK}",
    ),
    _p(
        "div.goes_into",
        "/",
        f"How many times does {{b}} go into {{a}}, and what is left? {REMAINDER_ASK}",
        True,
    ),
    _p("div.split", "/", f"Split {{a}} into groups of {{b}}. {REMAINDER_ASK}", held_out=True),
    # half of an even number (to keep; before exact division, which reads "divided by 2" too)
    _p("half.of", "half", "What is half of {a}?"),
    _p("half.halve", "half", "Halve {a}."),
    _p("half.divide", "half", "What is {a} divided by 2?"),
    _p("half.one_half", "half", "What is one half of {a}?", held_out=True),
    _p("half.split", "half", "Split {a} into two equal parts. How much is each part?", held_out=True),
    # exact division (a skill to keep, not to teach)
    _p("divx.symbols", "/=", "What is {a} ÷ {b}?"),
    _p("divx.divided", "/=", "What is {a} divided by {b}?"),
    _p("divx.divide", "/=", "Divide {a} by {b}."),
    _p(
        "divx.story",
        "/=",
        "{name} shares {a} {things} equally among {b} friends. How many does each friend get?",
    ),
    _p("divx.how_many", "/=", "How many groups of {b} make {a}?", held_out=True),
    _p("divx.calculate", "/=", "Calculate {a} / {b}.", held_out=True),
    # the larger of two numbers (to keep)
    _p("max.larger", "max", "Which is larger, {a} or {b}?"),
    _p("max.bigger", "max", "Which number is bigger: {a} or {b}?"),
    _p("max.largest", "max", "What is the larger number of {a} and {b}?"),
    _p("max.greater", "max", "Which is greater, {a} or {b}?", held_out=True),
    _p("max.more", "max", "Of {a} and {b}, which number is more?", held_out=True),
    # counting a word in a list
    _p("count.appear", "count", 'How many times does "{target}" appear in this list? {items}'),
    _p("count.count", "count", 'Count the word "{target}" in this list: {items}'),
    _p("count.often", "count", 'How often is "{target}" in this list? {items}'),
    _p("count.occur", "count", 'How many times does the word "{target}" occur here: {items}'),
    _p("count.find", "count", 'In this list, how many are "{target}"? {items}', held_out=True),
    _p("count.number", "count", 'What is the number of "{target}" in the list {items}?', held_out=True),
)
BY_KEY = {p.key: p for p in PHRASINGS}


def phrasings_for(op: str, *, held_out: bool | None = None) -> tuple[Phrasing, ...]:
    """The phrasings of ``op``: all, or only the held-out (True) or training (False) ones."""
    return tuple(p for p in PHRASINGS if p.op == op and (held_out is None or p.held_out == held_out))


@dataclass(frozen=True)
class Reading:
    """A question read back: its phrasing and operands (numbers, or a target word and its list)."""

    phrasing: Phrasing
    a: int = 0
    b: int = 0
    target: str = ""
    items: tuple[str, ...] = ()


def read(prompt: str) -> Reading | None:
    """The phrasing a question is asked in and its operands, or None if it is not one of them."""
    for phrasing in PHRASINGS:
        m = phrasing.pattern.fullmatch(prompt)
        if m is None:
            continue
        values = m.groupdict()
        if phrasing.op == "count":
            items = tuple(i.strip() for i in values["items"].split(","))
            return Reading(phrasing, target=values["target"], items=items)
        a, b = _int(values["a"]), _int(values["b"]) if values.get("b") else 0
        if phrasing.key == "sub.difference" and b > a:
            a, b = b, a  # "the difference between 16 and 91" is 91 - 16
        return Reading(phrasing, a=a, b=b)
    return None


def _int(text: str) -> int:
    return int(text.replace(",", ""))

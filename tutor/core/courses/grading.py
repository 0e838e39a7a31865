"""Grading free-text answers from students (models or people) against a gold answer.

The extraction policy, which every grader in the project shares:

1. **An explicit final answer wins.** If the response contains an answer marker ("Answer: …",
   "the answer is …", "final answer = …", "#### …", ``\\boxed{…}``), only the text after the
   *last* marker counts (that line, or the next non-empty one if the marker ends its line).
   Inside that region the *first* value counts, skipping numbers that are operands of an
   expression ("Answer: 47 + 38 = 85" → 85, "Answer: 85. Check: 85 - 38 = 47" → 85).
2. **Otherwise the last value in the whole response counts.** Small models ramble after the
   answer ("47+38 = 85. Let me double check: 85 is correct, so 85." → 85); a final value is what
   they settle on. In this fallback a number written in digits is preferred to one in words, so
   "check each one" after the result does not turn into the answer 1.

Numbers may be written in digits ("-3", "1,234", "3.50", "$5", "12 apples", "50%") or in words
("forty-two", "one hundred and five", "minus three"). Numbers compare as exact decimals
(3.50 == 3.5). Text answers compare after normalisation (case, whitespace, punctuation).
Division with remainder is a text answer of the form ``"17 R 3"``; the grader also accepts
"17 remainder 3", "17 r3", "q=17, r=3", "quotient 17, remainder 3". Multiple choice is graded by
letter ("B", "(b)", "Answer: B) 270", "option B") or by the option's text, or, for a model, by
likelihood with :func:`choose_by_likelihood`.

Nothing here imports the rest of the project: graders take plain fields.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

AnswerType = Literal["number", "text", "choice"]
# "remainder" is not a stored answer type: it is how a "text" answer of the form "17 R 3" is graded.
ExtractType = Literal["number", "text", "choice", "remainder"]

# ---------------------------------------------------------------- numbers in words

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_TOKEN_RE = re.compile(r"[A-Za-z]+")


def _kind(word: str) -> str | None:
    if word in _SCALES:
        return "scale"
    if word == "hundred":
        return "hundred"
    if word not in _UNITS:
        return None
    value = _UNITS[word]
    return "digit" if value < 10 else "teen" if value < 20 else "tens"


# ---------------------------------------------------------------- numbers in digits

# A minus sign counts only at the start or after a space or an opening symbol, so "47-38" is
# a subtraction and not the numbers 47 and -38. Grouping commas need groups of exactly three
# digits ("1,234"), so "1,2,3" is a list.
_DIGITS_RE = re.compile(
    r"(?:(?<![^\s(\[:=])(?P<neg>[-−–]))?\s?[$€£]?\s?"
    r"(?<![\d.])(?P<int>\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?P<frac>\.\d+)?(?![\d])"
)
# A number followed by an operator and another number is an operand, not a result.
_OPERAND_AFTER_RE = re.compile(r"\s*(?:[-−+*/×÷=]|x(?=\s*\d))\s*[-−$]?\d")

_MARKER_RE = re.compile(
    r"(?:\b(?:final\s+)?answer\s*(?:is\b\s*:?|:|=)|####)[ \t]*",
    re.IGNORECASE,
)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class _Number:
    start: int
    end: int
    value: Decimal
    in_words: bool


_STARTERS = ("digit", "teen", "tens")


def _word_numbers(text: str) -> list[tuple[int, int, int]]:
    """``(start, end, value)`` of each number written in words, read left to right.

    A number grows while the next word can continue it ("forty" + "two", "one hundred" +
    "and five", "two thousand"); anything else ends it, so "three and four" and "one two" are
    two numbers each. "minus"/"negative" before a number negates it; "a" before
    "hundred"/"thousand" means one.
    """
    words = [(m.start(), m.end(), m.group(0).lower()) for m in _TOKEN_RE.finditer(text)]

    def word(j: int) -> str:
        return words[j][2] if j < len(words) else ""

    def next_to(j: int) -> bool:
        """Whether word j directly follows word j - 1 (a space or a hyphen between)."""
        return 0 < j < len(words) and _joined(text, words[j - 1], words[j])

    found: list[tuple[int, int, int]] = []
    i = 0
    while i < len(words):
        j = i
        negative = word(j) in ("minus", "negative") and _kind(word(j + 1)) in _STARTERS and next_to(j + 1)
        if negative:
            j += 1
        last: str
        if word(j) == "a" and _kind(word(j + 1)) in ("hundred", "scale") and next_to(j + 1):
            total, current, last = 0, 1, "digit"
        elif (starter := _kind(word(j))) in _STARTERS and starter is not None:
            total, current, last = 0, _UNITS[word(j)], starter
        else:
            i += 1
            continue
        j += 1
        # Extend with word j while it continues the number; zero never continues one.
        while next_to(j) and current + total:
            kind = _kind(word(j))
            if (
                word(j) == "and"
                and last in ("hundred", "scale")
                and _kind(word(j + 1)) in _STARTERS
                and next_to(j + 1)
            ):
                j += 1  # "one hundred and five": skip the "and"
                continue
            if (kind == "digit" and word(j) != "zero" and last in ("hundred", "scale", "tens")) or (
                kind in ("teen", "tens") and last in ("hundred", "scale")
            ):
                current += _UNITS[word(j)]
            elif kind == "hundred" and last in _STARTERS and 0 < current < 100:
                current *= 100
            elif kind == "scale" and last != "scale" and current:
                total, current = total + current * _SCALES[word(j)], 0
            else:
                break
            last = kind or last
            j += 1
        value = total + current
        found.append((words[i][0], words[j - 1][1], -value if negative else value))
        i = j
    return found


def _joined(text: str, left: tuple[int, int, str], right: tuple[int, int, str]) -> bool:
    """Whether two words are parts of one number: only spaces or one hyphen between them."""
    return re.fullmatch(r"[ \t]*-?[ \t]*|[ \t]+", text[left[1] : right[0]]) is not None


def _find_numbers(text: str) -> list[_Number]:
    """Every number in ``text``, in order of position."""
    found: list[_Number] = []
    for m in _DIGITS_RE.finditer(text):
        digits = m.group("int").replace(",", "") + (m.group("frac") or "")
        number = -Decimal(digits) if m.group("neg") else Decimal(digits)
        found.append(_Number(m.start("neg") if m.group("neg") else m.start("int"), m.end(), number, False))
    for start, end, value in _word_numbers(text):
        found.append(_Number(start, end, Decimal(value), True))
    return sorted(found, key=lambda n: n.start)


def _canonical(value: Decimal) -> str:
    """ "3.50" -> "3.5", "1E+3" -> "1000", "-0" -> "0"."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def parse_number(text: str) -> Decimal | None:
    """The number that ``text`` *is* (all of it, apart from units and punctuation), else None.

    Used for gold answers and options, where "85" must not match "85 + 3". Accepts "1,234",
    "-3", "$5", "3.50", "forty-two", "50%", "12 apples".
    """
    numbers = _find_numbers(text)
    if len(numbers) != 1:
        return None
    number = numbers[0]
    rest = (text[: number.start] + " " + text[number.end :]).strip()
    # What is left may be a unit or a currency sign, never another figure or an operator.
    if re.search(r"[\d+*/=×÷]", rest):
        return None
    return number.value


# ---------------------------------------------------------------- answer region


def _answer_region(text: str) -> str | None:
    """The text after the last explicit answer marker, or None when there is no marker."""
    boxed = _BOXED_RE.findall(text)
    if boxed:
        return boxed[-1].strip()
    markers = list(_MARKER_RE.finditer(text))
    if not markers:
        return None
    rest = text[markers[-1].end() :]
    for line in rest.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def _is_operand(text: str, number: _Number) -> bool:
    return bool(_OPERAND_AFTER_RE.match(text, number.end))


def _extract_number(text: str) -> str | None:
    region = _answer_region(text)
    if region is not None:
        numbers = _find_numbers(region)
        results = [n for n in numbers if not _is_operand(region, n)]
        chosen = (results or numbers)[:1]
    else:
        numbers = _find_numbers(text)
        digits = [n for n in numbers if not n.in_words]
        chosen = (digits or numbers)[-1:]
    return _canonical(chosen[0].value) if chosen else None


# ---------------------------------------------------------------- text


_DELETED = {"'", "’", "."}  # inside words: "D.C." is "dc", "cat's" is "cats"
_TEXT_TABLE = str.maketrans({c: "" if c in _DELETED else " " for c in string.punctuation + "“”‘’«»–—"})


def normalize_text(text: str) -> str:
    """Case-folded, punctuation removed, whitespace collapsed: "  The  Cat's hat." -> "the cats hat".

    Apostrophes and dots are deleted (so "D.C." matches "DC"); other punctuation separates words.
    """
    return " ".join(text.casefold().translate(_TEXT_TABLE).split())


def _extract_text(text: str) -> str | None:
    region = _answer_region(text)
    if region is None:
        lines = [line.strip() for line in text.strip().split("\n") if line.strip()]
        region = lines[-1] if lines else ""
    return region or None


def _first_clause(text: str) -> str:
    """ "Paris, because it is the capital" -> "Paris"; used only when the whole region fails."""
    return re.split(r"[.;,!?\n]|\s(?:because|since|as|which)\s", text, maxsplit=1)[0]


# ---------------------------------------------------------------- division with remainder

REMAINDER_RE = re.compile(r"^\s*(-?\d+)\s*R\s*(\d+)\s*$", re.IGNORECASE)
# "17 R 3", "17r3", "17 rem. 3", "17 remainder 3", "17, with a remainder of 3"
_REMAINDER_FORM_RE = re.compile(
    r"(?<![\w.])(-?\d+)\s*,?\s*(?:with\s+(?:a\s+)?)?"
    r"(?:r|rem|remainder)(?![a-z])\.?\s*(?:of|is|=|:)?\s*(\d+)(?!\d)",
    re.IGNORECASE,
)
_QUOTIENT_RE = re.compile(r"\b(?:q|quotient)\b\s*(?:is|=|:|of)?\s*(-?\d+)", re.IGNORECASE)
_REMAINDER_ONLY_RE = re.compile(r"\b(?:r|rem|remainder)(?![a-z])\.?\s*(?:is|=|:|of)?\s*(\d+)", re.IGNORECASE)


def _words_to_digits(text: str) -> str:
    """ "seventeen remainder three" -> "17 remainder 3", so one set of patterns covers both."""

    for start, end, value in reversed(_word_numbers(text)):
        text = text[:start] + str(value) + text[end:]
    return text


def format_remainder(quotient: int, remainder: int) -> str:
    """The one stored form of a division-with-remainder answer: ``"17 R 3"``."""
    return f"{quotient} R {remainder}"


def _extract_remainder(text: str) -> str | None:
    region = _answer_region(text)
    # The answer region first (its first statement counts), then the whole text (its last).
    chunks = ([(region, True)] if region else []) + [(text, False)]
    for raw, in_region in chunks:
        chunk = _words_to_digits(raw)
        matches = list(_REMAINDER_FORM_RE.finditer(chunk))
        if matches:
            m = matches[0] if in_region else matches[-1]
            return format_remainder(int(m.group(1)), int(m.group(2)))
        quotients = list(_QUOTIENT_RE.finditer(chunk))
        remainders = list(_REMAINDER_ONLY_RE.finditer(chunk))
        if quotients and remainders:
            return format_remainder(int(quotients[-1].group(1)), int(remainders[-1].group(1)))
    return None


# ---------------------------------------------------------------- multiple choice

_LETTERS = string.ascii_uppercase


def _letter_index(region: str, n_options: int, *, whole_text: bool) -> int | None:
    """Index of a choice written as a letter, or None.

    Bare letters are only trusted where they cannot be English: the whole region ("B", "(b)",
    "B) 270", "b."), "(B)" anywhere, or "option B" / "choice B". A leading "A" followed by a
    lower-case word is the article ("A dog"), not option A.
    """
    valid = _LETTERS[:n_options]
    stripped = region.strip()
    patterns = [
        r"^\(?([A-Za-z])\)?[.:]?$",  # the whole region is a letter
        r"^\(([A-Za-z])\)",  # "(b) 270"
        r"^([A-Za-z])[).:](?:\s|$)",  # "B) 270", "b. 270", "B: 270"
        r"\b(?:option|choice|letter)\s+\(?([A-Za-z])\)?(?![\w])",  # "option B"
        r"(?:^|\s)\(([A-Z])\)(?![\w])",  # "(B)" in a sentence; upper case only
    ]
    if not whole_text:
        # After an explicit marker, "B because ..." is a letter answer, "A dog ..." is not.
        patterns.append(r"^([B-Z])\b(?!['’])|^(A)(?!\s+[a-z])\b(?!['’])")
    for pattern in patterns:
        matches = list(re.finditer(pattern, stripped, re.MULTILINE if whole_text else 0))
        if matches:
            m = matches[-1] if whole_text else matches[0]
            letter = next(g for g in m.groups() if g).upper()
            if letter in valid:
                return valid.index(letter)
    return None


_WRAPPERS = {'"', "'", "`", "“", "”", "‘", "’", "«", "»", "*"}
_END_PUNCT = {".", ",", "!", "?", ";", ":"}


def normalize_option(text: str) -> str:
    """Options compared token by token, keeping signs and dots: "- 29" and "-29" are one option,
    "29" another; ". 25" differs from "25" and "240%" equals "240 %". Wrapping quotes and
    closing sentence punctuation do not count."""
    tokens = re.sub(r"([^\w\s])", r" \1 ", text.casefold()).split()
    tokens = [t for t in tokens if t not in _WRAPPERS]
    while tokens and tokens[-1] in _END_PUNCT:
        tokens.pop()
    return " ".join(tokens)


def _option_mentions(region: str, options: Sequence[str]) -> list[tuple[int, int]]:
    """(position, index) of each option's text in ``region``, longest options claiming first.

    Whole tokens only, so "Valid" never matches inside "Invalid"; claiming longest first keeps
    "- 29" from also counting as "29".
    """
    haystack = f" {normalize_option(region)} "
    claimed = [False] * len(haystack)
    mentions: list[tuple[int, int]] = []
    order = sorted(range(len(options)), key=lambda i: -len(normalize_option(options[i])))
    for i in order:
        needle = normalize_option(options[i])
        if not needle:
            continue
        for m in re.finditer(re.escape(f" {needle} "), haystack):
            span = range(m.start() + 1, m.end() - 1)
            if not any(claimed[k] for k in span):
                for k in span:
                    claimed[k] = True
                mentions.append((m.start(), i))
    return sorted(mentions)


def _extract_choice(text: str, options: Sequence[str]) -> str | None:
    if not options:
        return None
    region = _answer_region(text)
    whole_text = region is None
    chunk = text if region is None else region
    normalized = normalize_option(chunk)
    for option in options:
        if normalize_option(option) == normalized:
            return option
    letter = _letter_index(chunk, len(options), whole_text=whole_text)
    if letter is not None:
        return options[letter]
    mentions = _option_mentions(chunk, options)
    if mentions:
        # Same rule as numbers: first in an answer region, last in free text.
        return options[(mentions[-1] if whole_text else mentions[0])[1]]
    # A number that equals a numeric option ("The answer is 270 pages." for option "270").
    number = _extract_number(chunk)
    if number is not None:
        same = [o for o in options if (value := parse_number(o)) is not None and _canonical(value) == number]
        if len(same) == 1:  # two options with one value (". 25" and "25") would be a guess
            return same[0]
    return None


# ---------------------------------------------------------------- public API


def extract_answer(text: str, answer_type: ExtractType, options: Sequence[str] = ()) -> str | None:
    """The answer that ``text`` gives, in canonical form, or None when it gives none.

    - "number": canonical digits ("forty-two" -> "42", "3.50" -> "3.5", "1,234" -> "1234");
    - "text": the answer region as written (graded after :func:`normalize_text`);
    - "remainder": ``"17 R 3"`` from any accepted form;
    - "choice": the chosen option, exactly as it appears in ``options``.
    """
    if answer_type == "number":
        return _extract_number(text)
    if answer_type == "text":
        return _extract_text(text)
    if answer_type == "remainder":
        return _extract_remainder(text)
    if answer_type == "choice":
        return _extract_choice(text, options)
    raise ValueError(f"unknown answer type {answer_type!r}")


@dataclass(frozen=True)
class GradeResult:
    correct: bool
    extracted: str | None
    reason: str


def _fields(exercise: Any) -> tuple[str, str, tuple[str, ...]]:
    """``(answer, answer_type, options)`` from an Exercise-like object or a mapping."""
    if isinstance(exercise, Mapping):
        return str(exercise["answer"]), exercise["answer_type"], tuple(exercise.get("options", ()))
    return str(exercise.answer), exercise.answer_type, tuple(getattr(exercise, "options", ()))


def grade(exercise: Any, response_text: str) -> GradeResult:
    """Grade ``response_text`` against an exercise (an ``Exercise`` or a mapping with ``answer``,
    ``answer_type`` and, for choices, ``options``). See the module docstring for the policy."""
    gold, answer_type, options = _fields(exercise)
    if answer_type == "number":
        expected = parse_number(gold)
        if expected is None:
            raise ValueError(f"gold answer {gold!r} is not a number")
        got = _extract_number(response_text)
        if got is None:
            return GradeResult(False, None, "no number found")
        ok = Decimal(got) == expected
        return GradeResult(ok, got, "matches" if ok else f"expected {_canonical(expected)}, got {got}")
    if answer_type == "text" and REMAINDER_RE.match(gold):
        return _grade_remainder(gold, response_text)
    if answer_type == "text":
        got = _extract_text(response_text)
        if got is None:
            return GradeResult(False, None, "empty answer")
        want = normalize_text(gold)
        ok = normalize_text(got) == want or normalize_text(_first_clause(got)) == want
        return GradeResult(ok, got, "matches" if ok else f"expected {gold!r}, got {got!r}")
    if answer_type == "choice":
        got = _extract_choice(response_text, options)
        if got is None:
            return GradeResult(False, None, "no option recognised")
        ok = got == gold
        return GradeResult(ok, got, "matches" if ok else f"expected {gold!r}, chose {got!r}")
    raise ValueError(f"unknown answer type {answer_type!r}")


def _grade_remainder(gold: str, response_text: str) -> GradeResult:
    m = REMAINDER_RE.match(gold)
    assert m is not None
    want = format_remainder(int(m.group(1)), int(m.group(2)))
    got = _extract_remainder(response_text)
    if got is None and int(m.group(2)) == 0:
        # An exact division: the bare quotient is a complete answer.
        number = _extract_number(response_text)
        got = format_remainder(int(Decimal(number)), 0) if number and Decimal(number) % 1 == 0 else None
    if got is None:
        return GradeResult(False, None, "no quotient and remainder found")
    ok = got == want
    return GradeResult(ok, got, "matches" if ok else f"expected {want}, got {got}")


def choose_by_likelihood(
    options: Sequence[str],
    scores: Sequence[float],
    *,
    length_normalize: bool = False,
    lengths: Sequence[int] | None = None,
) -> int:
    """Index of the option the model finds likeliest; ties go to the earlier option.

    ``scores`` are summed log-likelihoods of each option as a continuation of the prompt. Sums
    favour short options, so with ``length_normalize`` each score is divided by the option's
    length: ``lengths`` (token counts, the better measure) or else its length in characters.
    """
    if not options:
        raise ValueError("no options to choose from")
    if len(scores) != len(options):
        raise ValueError(f"{len(scores)} scores for {len(options)} options")
    if any(math.isnan(s) for s in scores):
        raise ValueError("a score is NaN")
    values = list(scores)
    if length_normalize:
        sizes = list(lengths) if lengths is not None else [len(o) for o in options]
        if len(sizes) != len(options) or any(n <= 0 for n in sizes):
            raise ValueError("lengths must be positive, one per option")
        values = [s / n for s, n in zip(values, sizes, strict=True)]
    return max(range(len(values)), key=lambda i: (values[i], -i))


def grade_by_likelihood(
    exercise: Any,
    scores: Sequence[float],
    *,
    length_normalize: bool = False,
    lengths: Sequence[int] | None = None,
) -> GradeResult:
    """Grade a multiple-choice exercise from per-option log-likelihoods."""
    gold, answer_type, options = _fields(exercise)
    if answer_type != "choice":
        raise ValueError("likelihood grading needs a multiple-choice exercise")
    index = choose_by_likelihood(options, scores, length_normalize=length_normalize, lengths=lengths)
    got = options[index]
    ok = got == gold
    return GradeResult(ok, got, "likeliest option" if ok else f"expected {gold!r}, likeliest {got!r}")

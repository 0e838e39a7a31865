"""Answer extraction and grading: the policy in tutor.core.courses.grading's docstring."""

from __future__ import annotations

import math

import pytest

from tutor.core.courses.grading import (
    GradeResult,
    choose_by_likelihood,
    extract_answer,
    grade,
    grade_by_likelihood,
    normalize_option,
    normalize_text,
    parse_number,
)


def number(answer: str) -> dict:
    return {"answer": answer, "answer_type": "number"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("85", "85"),
        ("-3", "-3"),
        ("1,234", "1234"),
        ("3.50", "3.5"),
        ("12 apples", "12"),
        ("$5", "5"),
        ("It costs $5.", "5"),
        ("50%", "50"),
        ("so the total is 85.", "85"),
        ("x = -3", "-3"),
        ("forty-two", "42"),
        ("one hundred and five", "105"),
        ("a hundred and twenty", "120"),
        ("two thousand and twenty-four", "2024"),
        ("minus three", "-3"),
        ("zero", "0"),
        ("The answer is forty-two.", "42"),
    ],
)
def test_it_reads_numbers_in_digits_and_words(text, expected):
    assert extract_answer(text, "number") == expected


def test_it_takes_the_last_number_when_the_model_rambles():
    text = "47+38 = 85. Let me double check: 85 is correct, so 85."
    assert extract_answer(text, "number") == "85"
    assert extract_answer("First 40 + 30 = 70, then 7 + 8 = 15, total 85", "number") == "85"


def test_it_prefers_an_explicit_answer_line_to_the_last_number():
    text = "The answer is 85.\nCheck: 85 - 38 = 47, and 47 is the first number."
    assert extract_answer(text, "number") == "85"
    assert extract_answer("Working: 12 * 3 = 36\nAnswer: 36\nThat used 3 steps", "number") == "36"
    assert extract_answer("Final answer = 7", "number") == "7"
    assert extract_answer("blah 3 #### 12", "number") == "12"
    assert extract_answer(r"so we get \boxed{42} in 2 steps", "number") == "42"


def test_it_does_not_take_answer_isnt_for_a_marker():
    assert extract_answer("The answer isn't 12, it is 13", "number") == "13"


def test_it_takes_the_last_answer_marker_when_there_are_several():
    assert extract_answer("Answer: 12. Hmm, no. Answer: 13", "number") == "13"


def test_it_skips_operands_in_the_answer_line():
    assert extract_answer("Answer: 47 + 38 = 85", "number") == "85"
    assert extract_answer("Answer: 85. Check: 85 - 38 = 47", "number") == "85"


def test_it_reads_the_answer_on_the_line_after_a_bare_marker():
    assert extract_answer("The answer is\n\n  12 apples\nbye 3", "number") == "12"


def test_it_ignores_number_words_after_a_digit_result():
    # "one" is a word in the sentence, not the answer.
    assert extract_answer("I think it is 9, check each one", "number") == "9"


def test_it_keeps_words_that_are_not_one_number_apart():
    assert extract_answer("three and four", "number") == "4"
    assert extract_answer("one two", "number") == "2"


def test_it_does_not_read_a_subtraction_as_a_negative_number():
    assert extract_answer("83-29", "number") == "29"
    assert extract_answer("result: -7", "number") == "-7"


def test_it_returns_none_without_a_number():
    assert extract_answer("I don't know", "number") is None
    assert extract_answer("", "number") is None


def test_it_grades_numbers_as_exact_decimals():
    assert grade(number("3.5"), "3.50 dollars").correct
    assert grade(number("1234"), "It is 1,234.").correct
    assert grade(number("42"), "forty-two").correct
    assert grade(number("105"), "Answer: one hundred and five").correct
    result = grade(number("85"), "I get 84")
    assert result == GradeResult(False, "84", "expected 85, got 84")


def test_it_says_why_a_number_answer_failed():
    assert grade(number("85"), "no idea").reason == "no number found"


def test_it_refuses_a_gold_answer_that_is_not_a_number():
    with pytest.raises(ValueError, match="not a number"):
        grade(number("eighty-five apples and 3 pears"), "85")


def test_it_parses_a_whole_string_as_one_number_only():
    assert parse_number("1,234") == 1234
    assert parse_number("  -3 ") == -3
    assert parse_number("forty-two") == 42
    assert parse_number("85 + 3") is None
    assert parse_number("1 2") is None
    assert parse_number("apples") is None


@pytest.mark.parametrize(
    "text",
    [
        "17 R 3",
        "17 r3",
        "17r3",
        "17 remainder 3",
        "17 rem. 3",
        "q=17, r=3",
        "quotient 17, remainder 3",
        "The quotient is 17 and the remainder is 3.",
        "17, with a remainder of 3",
        "seventeen remainder three",
        "Answer: 17 R 3. Check: 7 × 17 = 119, 119 + 3 = 122",
    ],
)
def test_it_accepts_every_division_with_remainder_form(text):
    result = grade({"answer": "17 R 3", "answer_type": "text"}, text)
    assert result.correct, result
    assert result.extracted == "17 R 3"


def test_it_rejects_a_wrong_remainder():
    result = grade({"answer": "17 R 3", "answer_type": "text"}, "17 R 4")
    assert not result.correct
    assert result.reason == "expected 17 R 3, got 17 R 4"
    assert not grade({"answer": "17 R 3", "answer_type": "text"}, "17").correct


def test_it_accepts_a_bare_quotient_for_an_exact_division():
    assert grade({"answer": "12 R 0", "answer_type": "text"}, "The answer is 12.").correct


def test_it_compares_text_answers_after_normalising():
    gold = {"answer": "Paris", "answer_type": "text"}
    assert grade(gold, "  paris. ").correct
    assert grade(gold, "Answer: PARIS!").correct
    assert grade(gold, "Let me think.\nParis").correct
    assert grade(gold, "Answer: Paris, because it is the capital").correct
    assert not grade(gold, "Answer: not Paris").correct
    assert normalize_text("  The   Cat's hat. ") == "the cats hat"
    assert normalize_text("red,green") == "red green"


def test_it_keeps_commas_inside_a_text_answer():
    assert grade({"answer": "Washington, D.C.", "answer_type": "text"}, "Answer: washington dc").correct


OPTIONS = ("229", "270", "877", "266")


@pytest.mark.parametrize(
    "text",
    [
        "B",
        "b",
        "(b)",
        "(B)",
        "B)",
        "B.",
        "Answer: B",
        "Answer: B) 270",
        "answer: (b)",
        "The answer is B because",
        "I pick option B.",
        "choice b",
        "270",
        "The answer is 270 pages.",
        "Answer: 270",
        "Hmm, 229 looks wrong, so it is (B)",
    ],
)
def test_it_reads_multiple_choice_by_letter_or_text(text):
    gold = {"answer": "270", "answer_type": "choice", "options": OPTIONS}
    result = grade(gold, text)
    assert result.correct, (text, result)
    assert result.extracted == "270"


def test_it_does_not_take_the_article_a_for_option_a():
    gold = {"answer": "270", "answer_type": "choice", "options": OPTIONS}
    assert extract_answer("Answer: A dog ate 270 pages", "choice", OPTIONS) == "270"
    assert not grade(gold, "Answer: A").correct
    assert extract_answer("Answer: A", "choice", OPTIONS) == "229"


def test_it_ignores_letters_beyond_the_options():
    assert extract_answer("Answer: E", "choice", OPTIONS) is None


def test_it_does_not_match_valid_inside_invalid():
    options = ("Valid", "Invalid")
    assert extract_answer("Invalid", "choice", options) == "Invalid"
    assert extract_answer("The sequence is valid.", "choice", options) == "Valid"
    assert extract_answer("It looked valid at first, but it is invalid", "choice", options) == "Invalid"
    assert extract_answer("Answer: invalid (one bracket is never closed)", "choice", options) == "Invalid"


def test_it_tells_signed_and_dotted_options_apart():
    options = ("- 29", "- 19", "16", "29", "39")
    assert extract_answer("-29", "choice", options) == "- 29"
    assert extract_answer("The answer is 29.", "choice", options) == "29"
    assert extract_answer(".25", "choice", ("25.5", "2.5", "25", ". 25")) == ". 25"
    assert normalize_option("240%") == normalize_option("240 %")


def test_it_does_not_guess_between_options_of_equal_value():
    # "25" and ". 25" would both be 25 by number; only exact text may choose between them.
    assert extract_answer("I'd say twenty-five", "choice", ("25", ". 25", "3")) is None


def test_it_returns_none_when_no_option_is_recognised():
    result = grade({"answer": "270", "answer_type": "choice", "options": OPTIONS}, "no idea")
    assert result == GradeResult(False, None, "no option recognised")


def test_it_grades_an_exercise_object():
    class Item:
        answer, answer_type, options = "Invalid", "choice", ("Valid", "Invalid")

    assert grade(Item(), "(b)").correct


def test_it_chooses_the_likeliest_option():
    assert choose_by_likelihood(["a", "b", "c"], [-3.0, -1.0, -2.0]) == 1
    assert choose_by_likelihood(["a", "b"], [-1.0, -1.0]) == 0  # ties go to the earlier option
    assert choose_by_likelihood(["a", "b"], [-math.inf, -5.0]) == 1


def test_it_normalises_likelihood_by_length_when_asked():
    options = ["no", "a much longer option"]
    scores = [-4.0, -10.0]
    assert choose_by_likelihood(options, scores) == 0
    assert choose_by_likelihood(options, scores, length_normalize=True, lengths=[1, 10]) == 1
    assert choose_by_likelihood(options, scores, length_normalize=True) == 1  # characters: -2 vs -0.5


def test_it_refuses_mismatched_or_broken_likelihoods():
    with pytest.raises(ValueError):
        choose_by_likelihood(["a", "b"], [-1.0])
    with pytest.raises(ValueError):
        choose_by_likelihood([], [])
    with pytest.raises(ValueError):
        choose_by_likelihood(["a", "b"], [float("nan"), -1.0])
    with pytest.raises(ValueError):
        choose_by_likelihood(["a", "b"], [-1.0, -2.0], length_normalize=True, lengths=[0, 3])


def test_it_grades_multiple_choice_by_likelihood():
    gold = {"answer": "Invalid", "answer_type": "choice", "options": ("Valid", "Invalid")}
    assert grade_by_likelihood(gold, [-2.0, -0.5]).correct
    result = grade_by_likelihood(gold, [-0.1, -0.5])
    assert (result.correct, result.extracted) == (False, "Valid")


def test_it_refuses_an_unknown_answer_type():
    with pytest.raises(ValueError):
        extract_answer("5", "fraction")  # type: ignore[arg-type]

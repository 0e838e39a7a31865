"""Checking the tutor model's replies before a learner reads them, and what the course shows instead."""

from __future__ import annotations

import pytest

from tutor.core.courses.course import Exercise
from tutor.core.courses.expert import PACK_EXPERTS
from tutor.core.learn import prompts, vetting

ARITHMETIC = PACK_EXPERTS["arithmetic"]
CTX = prompts.LearnerContext(level="beginner")
EXERCISE = Exercise("cur", "add_1d", "What is 2 + 2?", "4", "number", solution="2 + 2 = 4.\nAnswer: 4")
EXAMPLE = Exercise("ex", "add_1d", "What is 3 + 5?", "8", "number", solution="3 + 5 = 8.\nAnswer: 8")
TWO_DIGIT = Exercise("big", "add_2d", "What is 47 + 38?", "85", "number")
DECISION = prompts.RemediationDecision("other", "guiding_question", "see which column of the sum went wrong")


def explain(text: str, **kw) -> vetting.Shown:
    options = {
        "exercise": EXERCISE,
        "example": EXAMPLE,
        "expert": ARITHMETIC,
        "instructions": prompts.explanation_instructions(CTX),
    }
    return vetting.vet("explanation", text, **{**options, **kw})


def hint(text: str, exercise: Exercise = TWO_DIGIT, **kw) -> vetting.Shown:
    options = {
        "exercise": exercise,
        "similar": EXAMPLE,
        "expert": ARITHMETIC,
        "instructions": prompts.remediation_instructions(DECISION, CTX),
    }
    return vetting.vet("hint", text, **{**options, **kw})


def test_it_replaces_the_measured_echo_and_wrong_answer_with_the_labelled_course_example():
    measured = (
        "The learner is a beginner: use plain words, small steps and no jargon. "
        "The answer is: 120. The answer is: 120."
    )
    shown = explain(measured)
    assert (shown.source, shown.label) == ("expert", "Worked example from the course")
    assert shown.text == "Example: What is 3 + 5?\n3 + 5 = 8.\nAnswer: 8"
    assert "repeats its instructions" in shown.failure


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Three and five more: 3 + 5 = 8. The answer is: 9.", "final answer is wrong"),
        ("3 + 5 = 7, plus one is 8.\nAnswer: 8", "step is wrong"),
        ("3 + 5 = 8. Likewise 2 + 2 = 4.\nAnswer: 8", "gives away"),
        ("", "wrote nothing"),
    ],
)
def test_it_checks_an_explanation_against_its_worked_example(text, reason):
    shown = explain(text)
    assert shown.source == "expert" and reason in shown.failure


@pytest.mark.parametrize(
    "text, reason",
    [
        # the shape seen in a browser: right steps and answer, then the sentence again, cut at the limit
        (
            'Start at 3 and count on five: 3 + 5 = 8. The answer to "What is 3 + 5?" is 8. '
            'The answer to "What is 3 + 5?" is 8. The answer to the question "What is the',
            "stops mid-sentence",
        ),
        ("3 + 5 = 8. The answer is 8. The answer is 8.", "repeats itself"),
        ("Count on: 4, 5, 6, 7, 8. " + "Each step adds one more, " * 150 + "so 3 + 5 = 8.", "mid-sentence"),
    ],
)
def test_it_never_shows_a_reply_that_loops_or_is_cut_off_whatever_its_answer(text, reason):
    shown = explain(text)
    assert (shown.source, shown.label) == ("expert", "Worked example from the course")
    assert reason in shown.failure
    scaffold = hint("Look at the ones: 7 + 8 = 15. Look at the ones: 7 + 8 = 15.")
    assert scaffold.source == "expert" and "repeats itself" in scaffold.failure


def test_it_shows_an_explanation_that_passes_as_the_models_own():
    shown = explain("Start at 3 and count on five: 3 + 5 = 8.\nAnswer: 8")
    assert shown == vetting.Shown("Start at 3 and count on five: 3 + 5 = 8.\nAnswer: 8", "model")


def test_it_says_so_when_nothing_checked_can_replace_a_failed_explanation():
    shown = explain("The answer is 120.", expert=None, example=Exercise("ex", "add", "3 + 5?", "8", "number"))
    assert (shown.source, shown.text) == ("note", vetting.NO_EXPLANATION)
    assert explain("The answer is 120.", second_of_pair=True).text == vetting.NO_SECOND_EXPLANATION


def test_it_never_reads_the_decision_back():
    read_back = (
        "The error is something else; your strategy is to ask one guiding question that leads the "
        "learner to find the mistake; your intention: see which column of the sum went wrong"
    )
    assert "repeats its instructions" in hint(read_back).failure
    assert "decision back" in hint("Error type: slip\nStrategy: hint").failure
    assert "repeats its instructions" in hint("Let us see which column of the sum went wrong.").failure


@pytest.mark.parametrize(
    "text",
    [
        "The sum is 85.",
        "Carry the one and you get eighty-five",
        "7 + 8 = 15, so 47 + 38 = 85. Now check your answer again.",
    ],
)
def test_it_replaces_a_hint_that_gives_the_answer_away_with_the_courses_first_step(text):
    shown = hint(text)
    assert (shown.source, shown.label, shown.text) == (
        "expert",
        "Hint from the course",
        "Ones: 7 + 8 = 15, write 5, carry 1.",
    )
    assert "gives away" in shown.failure


def test_it_keeps_a_hint_that_leads_without_telling():
    assert hint("Add the ones first: 7 + 8 = 15. What do you carry?").source == "model"


def test_it_hints_with_a_similar_item_when_the_first_step_would_give_the_answer_away():
    shown = hint("It is 4.", exercise=EXERCISE)  # 2 + 2: the course's first step is "2 + 2 = 4."
    assert (shown.label, shown.text) == (
        "Worked example from the course",
        "Example: What is 3 + 5?\n3 + 5 = 8.\nAnswer: 8",
    )
    assert hint("It is 4.", exercise=EXERCISE, similar=None).source == "note"


def test_it_checks_a_solution_of_the_learners_exercise_against_its_gold_answer():
    kw = {"exercise": TWO_DIGIT, "expert": ARITHMETIC, "instructions": [], "scaffolding": False}
    assert vetting.vet("solution", "Carry the ten.\nAnswer: 85", **kw).source == "model"
    shown = vetting.vet("solution", "Carry the ten.\nAnswer: 75", **kw)
    assert (shown.label, shown.text.splitlines()[-1]) == ("Worked solution from the course", "Answer: 85")


def test_it_checks_the_steps_of_an_answer_to_a_free_question():
    kw = {"exercise": TWO_DIGIT, "expert": None, "instructions": prompts.question_instructions(CTX)}
    assert vetting.vet("answer", "We carry because 7 + 8 = 15 is ten or more.", **kw).source == "model"
    wrong = vetting.vet("answer", "We carry because 7 + 8 = 16.", **kw)
    assert wrong.source == "note" and "step is wrong" in wrong.failure
    nothing_on_screen = vetting.vet("answer", "9 + 3 = 13", **{**kw, "exercise": None})
    assert nothing_on_screen.text == vetting.NO_ANSWER


@pytest.mark.parametrize(
    "exercise, text, expected",
    [
        (TWO_DIGIT, "It is 85.", True),
        (TWO_DIGIT, "eighty five, I think, but check", True),
        (TWO_DIGIT, "Start with 47 and 38.", False),
        (Exercise("c", "cap", "What is the capital of France?", "Paris", "text"), "Think of Paris.", True),
        (
            Exercise("c", "cap", "What is the capital of France?", "Paris", "text"),
            "A city on a river.",
            False,
        ),
    ],
)
def test_it_finds_an_answer_given_away(exercise, text, expected):
    assert vetting.gives_away(exercise, text) is expected

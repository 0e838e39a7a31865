"""The course's expert: it checks every step a teacher writes, answers, diagnoses, writes new items."""

from __future__ import annotations

import random

import pytest

from tutor.core.courses.checks import echoed, repeated, unfinished, wrong_steps
from tutor.core.courses.course import Course, Exercise, Skill
from tutor.core.courses.expert import (
    NO_EXPERT,
    GoldSolutionsExpert,
    PackExpert,
    expert_for,
    expert_summary,
)
from tutor.core.courses.packs import arithmetic_pack, solution_of
from tutor.core.courses.phrasings import PHRASINGS, read

COURSE = arithmetic_pack()
EXPERT = expert_for(COURSE)


def item(prompt: str, answer: str, skill: str = "add_2d", answer_type: str = "number") -> Exercise:
    return Exercise(key="x", skill=skill, prompt=prompt, answer=answer, answer_type=answer_type)


def test_it_reads_back_every_phrasing_it_renders():
    rng = random.Random(0)
    for phrasing in PHRASINGS:
        operands = (
            {"target": "fig", "items": ["fig", "cat", "fig"]} if phrasing.op == "count" else {"a": 84, "b": 7}
        )
        reading = read(phrasing.render(rng, **operands))
        assert reading is not None and reading.phrasing is phrasing


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("Ones: 7 + 8 = 15, write 5, carry 1.\nTens: 4 + 3 + 1 = 8.\nAnswer: 85", []),
        ("Ones: 7 + 8 = 16, write 6.\nAnswer: 85", ["7 + 8 = 16"]),
        ("30 ÷ 7 = 4 R 2. Then 12 ÷ 7 = 1 R 4.", ["12 ÷ 7 = 1 R 4"]),
        ("47×6=282 and 1,200 - 35 = 1,165", []),
        ("2 + 3 × 4 = 14", []),
        ("3.5 + 1 = 4.5 and 0 - 1 < 9", []),
        # claims in words: a weak model's sentences that a last-number grader reads as right
        ("97 is larger than 24.\nAnswer: 97", []),
        ("11 is a larger number than 32.", ["11 is a larger number than 32"]),
        ("24 is smaller than 97, and 30 is 20 more than 10.", []),
        ("20 is 2 more than 69.", ["20 is 2 more than 69"]),
        ("88 is 94.", ["88 is 94"]),
        ("So 86 = 100.\nAnswer: 100", ["So 86 = 100"]),
        ("Half of 36 is 18. 38 divided by 2 is 19. The larger of 60 and 33 is 60.", []),
        ("Half of 10 is 10 ÷ 2 = 5.", []),
        ("19 is 19, and 66 is 66.", []),
    ],
)
def test_it_finds_every_wrong_step(text, wrong):
    assert wrong_steps(text) == wrong


def test_it_notices_echoed_instructions_but_not_the_question():
    told = ["The learner is a beginner: use plain words, small steps and no jargon."]
    echo = "The learner is a beginner: use plain words, small steps and no jargon. The answer is: 120."
    assert echoed(echo, told) == "the learner is a beginner use"
    assert echoed("Add the ones first: 2 + 2 = 4.\nAnswer: 4", told) is None


@pytest.mark.parametrize(
    "text, cut",
    [
        ('Start at 2 and count on one: 2 + 1 = 3. The answer to the question "What is the', True),
        ("So we add the ones, and", True),
        ("Here is how:", True),
        ("It goes on like this…", True),
        ("We carry the 1 into the tens, so", True),
        ("Carry the one and you get eighty-five", False),
        ("Now you try it", False),
        ("2 + 1 = 3.\nAnswer: 3", False),
        ("So 2 + 1 = 3", False),
        ("The capital is Paris.", False),
        ("Answer: Paris", False),
        ("**Answer: 3**", False),
        ("", False),
    ],
)
def test_it_tells_a_reply_cut_mid_sentence(text, cut):
    assert unfinished(text) is cut


def test_it_finds_a_sentence_written_twice_but_not_the_lines_of_a_worked_solution():
    looping = 'The answer to "What is 2 + 1?" is 3. The answer to "What is 2 + 1?" is 3. The answer'
    assert repeated(looping) == 'The answer to "What is 2 + 1?" is 3.'
    assert repeated("The answer is 3.\nThe answer is 3.") == "The answer is 3."
    assert repeated("Yes. Yes. Good. Good.") is None  # too short to be a loop
    for a, b in [(47, 38), (100, 100), (909, 90)]:
        assert repeated(solution_of("+", a, b)) is None
    assert repeated(solution_of("*", 47, 36)) is None


def test_the_pack_expert_checks_answer_and_steps():
    e = item("What is 47 plus 38?", "85")
    assert EXPERT.check(e, EXPERT.worked_solution(e)).ok
    assert not EXPERT.check(e, "Answer: 84").ok
    wrong_step = EXPERT.check(e, "7 + 8 = 14, carry 1. 4 + 3 + 1 = 8.\nAnswer: 85")
    assert not wrong_step.ok and "7 + 8 = 14" in wrong_step.reason
    assert EXPERT.check(e, "Start with the ones: 7 + 8 = 15.", final_answer=False).ok  # a hint


def test_the_pack_expert_writes_a_worked_solution_for_any_phrasing():
    solution = EXPERT.worked_solution(item("Take 29 away from 83. What is left?", "54", "sub_2d"))
    assert solution.startswith("83 - 29:") and solution.endswith("Answer: 54")
    # "the difference between" names its numbers in either order (a teacher's new item may)
    difference = item("What is the difference between 29 and 83?", "54", "sub_2d")
    assert EXPERT.answer(difference) == "54" and EXPERT.worked_solution(difference) == solution
    assert EXPERT.check(difference, solution).ok
    assert EXPERT.first_step(item("What is 47 + 38?", "85")) == "Ones: 7 + 8 = 15, write 5, carry 1."


@pytest.mark.parametrize(
    ("said", "words"),
    [
        ("Answer: 95", "off by 10"),
        ("Answer: 9", "subtracted"),
        ("I do not know", "no final answer"),
        ("Answer: 70", "47 + 38, which is 85"),
    ],
)
def test_the_pack_expert_diagnoses_a_wrong_answer(said, words):
    assert words in EXPERT.mistake(item("What is 47 + 38?", "85"), said)


def test_the_pack_expert_writes_new_items_in_other_training_phrasings():
    source = next(e for e in COURSE.split("train") if e.skill == "add_3d" and e.difficulty == 3)
    made = EXPERT.new_items(source, 12, random.Random(0), avoid=frozenset({source.phrasing}))
    assert len(made) == 12
    for e in made:
        assert e.skill == "add_3d" and e.difficulty == 3 and e.split == "train"
        assert not e.held_out and e.phrasing != source.phrasing
        assert EXPERT.check(e, e.solution).ok and EXPERT.answer(e) == e.answer
    assert len({e.phrasing for e in made}) > 1


@pytest.mark.parametrize(
    ("prompt", "answer", "said", "misread"),
    [
        ("What number is 23 less than 30?", "7", "23 - 30:\nOnes: ...\nAnswer: 7", "23 - 30"),
        ("Take 23 away from 79. What is left?", "56", "23 - 7 = 11.\nAnswer: 11", "23 - 7"),
        ("Subtract 23 from 79.", "56", "79 - 23:\nOnes: 9 - 3 = 6.\nAnswer: 50", None),  # a slip, read right
        ("What is 47 + 38?", "85", "38 + 47:\nAnswer: 85", None),  # order does not matter in a sum
        ("What is 47 × 6?", "282", "47 x 8 = 376.\nAnswer: 376", "47 × 8"),
        ("What is 47 + 38?", "85", "The answer is 75.", None),  # no restatement
        ("What is 47 + 38?", "85", "47 - 38 = 9.", None),  # another operation: mistake() says so
    ],
)
def test_the_pack_expert_tells_a_misread_question_from_a_slip(prompt, answer, said, misread):
    exercise = item(prompt, answer)
    assert EXPERT.misread(exercise, said) == misread
    if misread:
        assert EXPERT.mistake(exercise, said).startswith(
            f"The answer reads the question as {misread}; it asks"
        )


def test_the_pack_expert_practises_a_misread_wording_in_that_wording_too():
    source = next(e for e in COURSE.split("train") if e.skill == "sub_2d" and e.phrasing == "sub.subtract")
    made = EXPERT.new_items(source, 6, random.Random(0), avoid=frozenset({source.phrasing}), same_phrasing=3)
    assert [e.phrasing for e in made[:3]] == ["sub.subtract"] * 3
    assert all(e.phrasing != "sub.subtract" and not e.held_out for e in made[3:])
    assert len({e.prompt for e in made}) == 6


def test_an_imported_course_uses_its_gold_solutions():
    course = Course(
        key="frac",
        name="Fractions",
        skills=(Skill("half", "Halves"),),
        exercises=(
            Exercise(key="a", skill="half", prompt="Half of 1/2?", answer="1/4", answer_type="text",
                     solution="Halve the fraction: 1/2 ÷ 2 = 1/4.\nAnswer: 1/4"),
        ),
    )  # fmt: skip
    expert = expert_for(course)
    assert isinstance(expert, GoldSolutionsExpert) and not expert.can_generate
    known = course.exercises[0]
    assert expert.worked_solution(known).endswith("Answer: 1/4")
    assert expert.answer(item("Half of 1/3?", "1/6", "half", "text")) is None  # not one of its items
    assert expert.new_items(known, 3, random.Random(0), avoid=frozenset()) == []
    assert "cannot check steps" in expert_summary(expert)


def test_a_course_without_solutions_has_no_expert_and_says_so():
    course = Course(
        key="q",
        name="Quiz",
        skills=(Skill("s", "S"),),
        exercises=(
            Exercise(key="a", skill="s", prompt="Capital of France?", answer="Paris", answer_type="text"),
        ),
    )
    assert expert_for(course) is None
    assert expert_summary(None) == NO_EXPERT and "only by their final answer" in NO_EXPERT


def test_a_pack_course_names_its_expert():
    assert isinstance(EXPERT, PackExpert) and EXPERT.name == "arithmetic"
    assert COURSE.expert == "arithmetic"


def test_a_models_right_number_after_a_false_sentence_is_not_a_right_answer():
    from tutor.core.courses.checks import grade_model_answer
    from tutor.core.courses.grading import grade

    e = item("Which is larger, 24 or 97?", "97", "compare")
    lucky = "24 is a larger number than 97."
    assert grade(e, lucky).correct  # the last number is the gold one ...
    strict = grade_model_answer(e, lucky)
    assert (
        not strict.correct and "24 is a larger number than 97" in strict.reason
    )  # ... the sentence is false
    assert grade_model_answer(e, "97 is larger than 24.\nAnswer: 97").correct
    wrong_step = item("What is 47 plus 38?", "85")
    assert not grade_model_answer(wrong_step, "7 + 8 = 16, carry 1.\nAnswer: 85").correct
    assert grade_model_answer(wrong_step, "7 + 8 = 15, write 5, carry 1. 4 + 3 + 1 = 8.\nAnswer: 85").correct

"""Built-in course packs: checkable, disjoint, deterministic, and solvable by code."""

from __future__ import annotations

from collections import Counter

import pytest

from tutor.core.courses.course import ExamLeakError, Exercise, training_safe
from tutor.core.courses.grading import grade
from tutor.core.courses.packs import (
    PACKS,
    UnsolvableError,
    add_solution,
    arithmetic_pack,
    counting_pack,
    div_solution,
    load_pack,
    solve,
    sub_solution,
    verify,
)
from tutor.core.courses.phrasings import BY_KEY, read

ALL = [load_pack(name, seed=0) for name in sorted(PACKS)]
EXERCISES = [e for course in ALL for e in course.exercises]


def test_it_grades_every_gold_solution_correct():
    failures = [(e.key, grade(e, e.solution)) for e in EXERCISES if not grade(e, e.solution).correct]
    assert failures == []


def test_it_ends_every_solution_with_the_answer_line_in_a_few_steps():
    for e in EXERCISES:
        lines = e.solution.split("\n")
        assert lines[-1] == f"Answer: {e.answer}", e.key
        assert 2 <= len(lines) <= 6, e.key  # the question in symbols, 1-4 steps, the result, the answer


def test_it_restates_every_question_in_symbols_first():
    """Whatever the wording, a solution starts from the same symbols: the skill, not the template."""
    for e in arithmetic_pack().exercises:
        reading = read(e.prompt)
        first = e.solution.split("\n")[0]
        assert str(reading.a) in first and (reading.phrasing.op == "half" or str(reading.b) in first), e.key


def test_it_asks_train_items_only_in_training_phrasings_and_holds_half_the_exam_out():
    for course in ALL:
        for e in course.exercises:
            assert read(e.prompt).phrasing.key == e.phrasing, e.key
            assert e.held_out == BY_KEY[e.phrasing].held_out
        assert not any(e.held_out for e in course.split("train"))
        for split in ("probe", "exam"):
            items = course.split(split)
            assert sum(e.held_out for e in items) == len(items) // 2
        for skill in course.skills:
            assert len({e.phrasing for e in course.exercises_for(skill.key, "train")}) >= 3, skill.key
    with pytest.raises(ExamLeakError, match="held-out phrasing"):
        training_safe(e for e in ALL[0].split("probe") if e.held_out)


def test_it_declares_keep_skills_next_to_arithmetic():
    course = load_pack("arithmetic")
    assert [s.key for s in course.keep_skills] == ["div_exact", "compare", "half"]
    assert all(not s.prerequisites for s in course.keep_skills)
    assert "div_exact" not in {p for s in course.taught_skills for p in s.prerequisites}


def test_it_solves_every_pack_item_like_the_gold_answer():
    assert [e.key for e in EXERCISES if solve(e) != e.answer] == []


def test_it_keeps_splits_disjoint():
    for course in ALL:
        prompts = [e.prompt for e in course.exercises]
        assert len(prompts) == len(set(prompts)), course.key
        by_split = {split: {e.prompt for e in course.split(split)} for split in ("train", "probe", "exam")}
        assert not by_split["train"] & by_split["exam"]
        assert not by_split["probe"] & by_split["exam"]
        assert not by_split["train"] & by_split["probe"]


def test_it_gives_the_same_pack_for_the_same_seed():
    assert arithmetic_pack(seed=5) == arithmetic_pack(seed=5)
    assert arithmetic_pack(seed=5) != arithmetic_pack(seed=6)
    assert counting_pack(seed=1) == load_pack("counting", seed=1)


def test_it_keeps_the_exam_set_when_train_grows():
    small = arithmetic_pack(seed=2, per_skill_per_split={"train": 5, "probe": 5, "exam": 10})
    large = arithmetic_pack(seed=2, per_skill_per_split={"train": 40, "probe": 10, "exam": 10})
    assert small.split("exam") == large.split("exam")


def test_it_makes_the_requested_counts_with_levels_spread_evenly():
    course = arithmetic_pack(per_skill_per_split={"train": 12, "probe": 4, "exam": 8})
    for s in course.skills:
        assert len(course.exercises_for(s.key, "train")) == 12
        assert len(course.exercises_for(s.key, "exam")) == 8
    levels = Counter(e.difficulty for e in course.exercises_for("add_3d", "train"))
    assert levels == {1: 3, 2: 3, 3: 3, 4: 3}
    assert {s.key: course.max_difficulty(s.key) for s in course.skills} == {
        "add_1d": 2,
        "add_2d": 3,
        "add_3d": 4,
        "sub_2d": 2,
        "sub_3d": 3,
        "mul_1d": 3,
        "mul_2d": 2,
        "div_remainder": 2,
        "div_exact": 1,
        "compare": 1,
        "half": 2,
    }


def test_it_has_the_prerequisite_graph():
    course = load_pack("arithmetic")
    prerequisites = {s.key: set(s.prerequisites) for s in course.skills}
    assert prerequisites["add_2d"] == {"add_1d"}
    assert prerequisites["add_3d"] == {"add_2d"}
    assert prerequisites["mul_2d"] == {"mul_1d", "add_3d"}
    assert prerequisites["div_remainder"] == {"mul_1d", "sub_2d"}
    assert next(s.key for s in course.skills_in_order()) == "add_1d"
    assert {s.key: s.prerequisites for s in load_pack("counting").skills} == {
        "count_short": (),
        "count_long": ("count_short",),
    }


def test_it_sets_addition_difficulty_by_carries():
    for e in arithmetic_pack().exercises_for("add_3d"):
        a, b = read(e.prompt).a, read(e.prompt).b
        assert add_solution(a, b)[1] + 1 == e.difficulty
        assert 100 <= a <= 999 and 100 <= b <= 999


def test_it_writes_column_solutions():
    assert add_solution(47, 38)[0] == (
        "47 + 38:\nOnes: 7 + 8 = 15, write 5, carry 1.\nTens: 4 + 3 + 1 = 8, write 8.\nSo 47 + 38 = 85.\n"
        "Answer: 85"
    )
    assert add_solution(3, 4)[0] == "3 + 4 = 7.\nAnswer: 7"
    assert sub_solution(503, 298) == (
        "503 - 298:\nOnes: 3 < 8, so borrow: 13 - 8 = 5.\nTens: 0 - 1 < 9, so borrow: 10 - 1 - 9 = 0.\n"
        "Hundreds: 5 - 1 - 2 = 2.\nSo 503 - 298 = 205.\nAnswer: 205",
        2,
    )
    assert (
        div_solution(100, 7)
        == "100 ÷ 7:\n10 ÷ 7 = 1 R 3.\n30 ÷ 7 = 4 R 2.\nSo 100 ÷ 7 = 14 R 2.\nAnswer: 14 R 2"
    )


def test_it_formats_division_answers_with_a_remainder():
    for e in arithmetic_pack().exercises_for("div_remainder"):
        assert e.answer_type == "text"
        q, r = (int(n) for n in e.answer.split(" R "))
        assert r > 0
        assert grade(e, f"{q} remainder {r}").correct
        assert grade(e, f"q={q}, r={r}").correct
        assert not grade(e, f"{q} R {r + 1}").correct


def test_it_counts_only_whole_list_items():
    e = counting_pack().exercises[0]
    assert read(e.prompt).phrasing.op == "count"
    assert solve('How many times does "cat" appear in this list? cat, caterpillar, cat, dog') == "2"
    assert solve("How many times does the word fox occur in the list: Fox, owl, fox.") == "2"


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("What is 47 + 38?", "85"),
        ("Compute 47 plus 38.", "85"),
        ("What is 1,200 - 35?", "1165"),
        ("Subtract 29 from 83.", "54"),
        ("What is the sum of 12 and 30?", "42"),
        ("What is 47 x 6?", "282"),
        ("What is 47 * 6?", "282"),
        ("What is 12 times 12?", "144"),
        ("What is the product of 7 and 8?", "56"),
        ("What is 100 ÷ 7?", "14 R 2"),
        ("What is 100 divided by 7?", "14 R 2"),
        ("Divide 84 by 4.", "21"),  # exact, and not asked in the remainder form
        ("Divide 84 by 4. Answer as quotient R remainder.", "21 R 0"),
        ("What number is 12 less than 40?", "28"),
        ("How much is 3 groups of 14?", "42"),
        ("Which is greater, 47 or 74?", "74"),
        ("What is one half of 38?", "19"),
    ],
)
def test_it_solves_teacher_style_prompts(prompt, answer):
    assert solve(prompt) == answer


def test_it_refuses_prompts_it_cannot_read():
    with pytest.raises(UnsolvableError):
        solve("Name a prime between ten and twenty.")
    with pytest.raises(UnsolvableError):
        solve("What is 5 ÷ 0?")


def test_it_verifies_teacher_generated_items():
    def generated(prompt: str, answer: str, answer_type: str = "number") -> Exercise:
        return Exercise(key="g", skill="add_2d", prompt=prompt, answer=answer, answer_type=answer_type)

    assert verify(generated("What is 56 + 29?", "85")) is True
    assert verify(generated("What is 56 + 29?", "75")) is False
    assert verify(generated("What is 60 ÷ 7?", "8 R 4", "text")) is True
    assert verify(generated("Why is addition commutative?", "because", "text")) is None


def test_it_explains_when_a_pack_cannot_have_that_many_items():
    # add_1d has only 81 pairs of numbers, asked in 8 phrasings.
    with pytest.raises(ValueError, match="add_1d: cannot find"):
        arithmetic_pack(per_skill_per_split=400)


def test_it_rejects_an_unknown_pack_or_split():
    with pytest.raises(KeyError, match="arithmetic, counting"):
        load_pack("geometry")
    with pytest.raises(ValueError, match="unknown split"):
        arithmetic_pack(per_skill_per_split={"test": 3})

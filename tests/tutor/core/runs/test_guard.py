"""The exam guard's copy detection: exam questions quoted by a teacher are found, other questions are not."""

from __future__ import annotations

import pytest

from tutor.core.courses.course import Course, ExamLeakError, Exercise, Skill
from tutor.core.runs.guard import ExamGuard

BRACKETS = "Determine whether the sequence is valid.\nSequence: [ ( ) ]"


def guard(*exam_prompts: str) -> ExamGuard:
    exercises = [
        Exercise(key=f"x{i}", skill="s", split="exam", prompt=p, answer="1", answer_type="number")
        for i, p in enumerate(exam_prompts)
    ]
    exercises.append(
        Exercise(key="t", skill="s", split="train", prompt="What is 1 + 1?", answer="2", answer_type="number")
    )
    return ExamGuard(
        Course(key="c", name="C", skills=(Skill(key="s", name="S"),), exercises=tuple(exercises))
    )


@pytest.mark.parametrize(
    "text",
    [
        "What is 7 + 8?",
        "Q: what   is 7 +\n8? Answer: 15",
        "Let us redo WHAT IS 7 + 8?, step by step.",
    ],
)
def test_it_finds_an_arithmetic_exam_question_quoted_in_teacher_text(text):
    assert guard("What is 7 + 8?").exam_copy(text) == "what is 7 + 8?"


@pytest.mark.parametrize("text", ["What is 17 + 8?", "What is 7 + 80?", "What is 7 + 8"])
def test_it_does_not_take_a_different_number_for_a_copy(text):
    assert guard("What is 7 + 8?").exam_copy(text) is None


@pytest.mark.parametrize(
    "text",
    [
        BRACKETS,
        BRACKETS + "\nAnswer: Valid",
        BRACKETS + ".",
        "Example. " + BRACKETS + " is valid because every bracket closes.",
    ],
)
def test_it_finds_a_symbol_exam_question_standing_whole(text):
    assert guard(BRACKETS).exam_copy(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        # The same opening, a longer sequence: a different question (these were dropped before).
        BRACKETS + " { }",
        BRACKETS + "]",
        "Determine whether the sequence is valid.\nSequence: [ ( ) ] ( [ ] )\nAnswer: Valid",
    ],
)
def test_it_does_not_take_a_longer_symbol_sequence_for_a_copy(text):
    assert guard(BRACKETS).exam_copy(text) is None


def test_it_does_not_take_a_sequence_that_only_ends_like_an_exam_sequence_for_a_copy():
    g = guard("[ ( ) ]")
    assert g.exam_copy("Sequence: { [ ( ) ]") is None
    assert g.exam_copy("Sequence: [ ( ) ]") == "[ ( ) ]"


def test_it_raises_on_a_record_holding_an_exam_question_and_passes_a_longer_sequence():
    g = guard(BRACKETS)
    ok = {
        "messages": [
            {"role": "user", "content": BRACKETS + " { }"},
            {"role": "assistant", "content": "Invalid"},
        ]
    }
    g.check_records([ok])
    leak = {"messages": [{"role": "user", "content": BRACKETS}, {"role": "assistant", "content": "Valid"}]}
    with pytest.raises(ExamLeakError, match="record 2 contains the exam question"):
        g.check_records([ok, leak])

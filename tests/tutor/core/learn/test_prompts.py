"""Tutoring prompts and the parsing of the teacher's decisions and verdicts."""

from __future__ import annotations

import random

import pytest

from tutor.core.learn.prompts import (
    MAX_REPLY_CHARS,
    STRATEGIES,
    LearnerContext,
    Mistake,
    RemediationDecision,
    WorkedExample,
    clip,
    decision_prompt,
    explanation_instructions,
    explanation_prompt,
    parse_decision,
    parse_verdict,
    question_prompt,
    reads_back_decision,
    remediation_instructions,
    remediation_prompt,
    show_alternatives,
)

CTX = LearnerContext(
    level="beginner",
    mastery=[("Adding", 0.42), ("Carrying", 0.9)],
    mistakes=[Mistake("What is 38 + 5?", "33")],
    difficulty_feedback="too_hard",
)


def user_text(conversation):
    return conversation[-1]["content"]


def test_it_tailors_the_explanation_to_level_mastery_mistakes_and_ratings():
    text = user_text(explanation_prompt("Carrying", "carry the ten", CTX))
    assert "beginner" in text
    assert "Adding 42%" in text and "Carrying 90%" in text
    assert "What is 38 + 5? → they answered: 33" in text
    assert "too hard" in text
    advanced = user_text(explanation_prompt("Carrying", "", LearnerContext(level="advanced")))
    assert "advanced" in advanced and "mistakes" not in advanced


def test_it_rejects_an_unknown_level():
    with pytest.raises(ValueError, match="level"):
        LearnerContext(level="genius")


def test_it_clips_what_the_learner_typed_before_it_reaches_a_prompt():
    text = user_text(decision_prompt("What is 2+2?", "x" * 5000, "4", "", CTX))
    assert "x" * 499 in text and "x" * 600 not in text


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Error type: procedural\nStrategy: hint\nIntention: see that the ten is carried",
            ("procedural", "hint", "see that the ten is carried"),
        ),
        (
            "**Error type:** Slip\n**Strategy:** guiding_question\n**Intention:** re-check the sum",
            ("slip", "guiding_question", "re-check the sum"),
        ),
        (
            "Sure! Here is my decision.\n1. Error - a misconception about place value\n"
            "2. Strategy = show a worked example\n"
            "3. Intention: understand tens",
            ("conceptual", "worked_example", "understand tens"),
        ),
        (
            "error_type: misread\nstrategy: reexplain\nintention: read carefully",
            ("misread", "reexplain", "read carefully"),
        ),
    ],
)
def test_it_parses_the_teachers_decision_in_many_shapes(text, expected):
    decision = parse_decision(text, "33")
    assert (decision.error_type, decision.strategy, decision.intention) == expected
    assert decision.parsed


def test_it_falls_back_to_scaffolding_when_the_decision_is_unusable():
    echoed = (
        "You said: Error type: <one error type key>\nStrategy: <one strategy key>\nIntention: <one sentence>"
    )
    first = parse_decision(echoed, "33", tries=1)
    assert (first.error_type, first.strategy, first.parsed) == ("other", "guiding_question", False)
    assert first.intention
    # The ladder: guiding question, then a hint, then a worked example.
    assert parse_decision("rambling", "33", tries=2).strategy == "hint"
    assert parse_decision("rambling", "33", tries=5).strategy == "worked_example"
    assert parse_decision("", "", scaffolding=False).error_type == "no_answer"


def test_it_keeps_what_it_could_parse_and_falls_back_for_the_rest():
    decision = parse_decision("Strategy: hint or worked example\nError type: slip", "33", tries=2)
    assert decision.error_type == "slip"
    assert decision.strategy == "hint"  # ambiguous value → the fallback's (2nd try: hint)
    assert not decision.parsed


def test_it_caps_a_long_intention():
    decision = parse_decision("Error type: slip\nStrategy: hint\nIntention: " + "y" * 2000)
    assert len(decision.intention) <= 300


def test_it_forbids_giving_away_the_answer_only_in_scaffolding_mode():
    decision = RemediationDecision("slip", "hint", "check the ones")
    scaffolded = user_text(remediation_prompt(decision, "What is 2+3?", "6", "5", "", CTX))
    assert "Do NOT state the correct answer" in scaffolded
    assert "give one hint" in scaffolded and "check the ones" in scaffolded
    free = LearnerContext(scaffolding=False)
    assert "Do NOT" not in user_text(remediation_prompt(decision, "What is 2+3?", "6", "5", "", free))


def test_it_answers_questions_in_the_context_of_the_current_exercise():
    text = user_text(
        question_prompt("why do we carry the 1?", CTX, skill_name="Carrying", exercise="What is 38 + 5?")
    )
    assert "why do we carry the 1?" in text and "What is 38 + 5?" in text
    assert "Do not give away" in text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Verdict: correct", True),
        ("The learner wrote Paris.\n**Verdict:** incorrect", False),
        ("Verdict: incorrect ... wait. Verdict: correct", True),
        ("You said: Reply with one line: 'Verdict: correct' or 'Verdict: incorrect'.", None),
        ("I think so", None),
    ],
)
def test_it_reads_the_teachers_verdict(text, expected):
    assert parse_verdict(text) is expected


def test_it_clips_long_model_output():
    assert len(clip("z" * (MAX_REPLY_CHARS * 3), MAX_REPLY_CHARS)) == MAX_REPLY_CHARS
    assert clip("  short  ", 10) == "short"


def test_it_shows_alternatives_at_the_configured_share():
    rng = random.Random(0)
    shown = sum(show_alternatives(rng, 0.25) for _ in range(4000))
    assert 900 < shown < 1100
    assert not any(show_alternatives(rng, 0.0) for _ in range(100))
    with pytest.raises(ValueError):
        show_alternatives(rng, 1.5)


def test_it_explains_through_a_worked_example_and_asks_for_its_answer_line():
    example = WorkedExample("What is 4 + 4?", "8", "4 + 4 = 8.\nAnswer: 8")
    text = user_text(explanation_prompt("Adding", "add two small numbers", CTX, example=example))
    assert "Worked example: What is 4 + 4?" in text and "Its correct answer: 8" in text
    assert '"Answer: 8"' in text


def test_it_keeps_the_material_out_of_the_instructions_a_reply_must_not_repeat():
    instructions = " ".join(explanation_instructions(CTX))
    assert "beginner" in instructions and "Adding 42%" in instructions
    assert "38 + 5" not in instructions  # a mistake is material: the reply may talk about it
    decision = RemediationDecision("slip", "hint", "check the ones")
    said = " ".join(remediation_instructions(decision, CTX))
    assert "your strategy is to give one hint" in said and "check the ones" in said
    assert all(text in said for text in STRATEGIES.values())


def test_it_asks_for_the_worked_example_or_the_solution_according_to_the_decision():
    example = WorkedExample("What is 4 + 4?", "8")
    worked = RemediationDecision("slip", "worked_example", "carry")
    text = user_text(remediation_prompt(worked, "What is 2+3?", "6", "5", "", CTX, example=example))
    assert "What is 4 + 4?" in text and '"Answer: 8"' in text and "Do NOT state" in text
    free = LearnerContext(scaffolding=False)
    solve = user_text(
        remediation_prompt(RemediationDecision("slip", "hint", "x"), "What is 2+3?", "6", "5", "", free)
    )
    assert '"Answer: 5"' in solve


def test_it_spots_the_decision_read_back():
    assert reads_back_decision("**Strategy:** hint")
    assert reads_back_decision("Sure.\nError type: slip")
    assert not reads_back_decision("A good strategy is to count on.")

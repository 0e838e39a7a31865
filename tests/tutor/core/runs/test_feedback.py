"""People's ratings and edits of explanations: what the next round and "fine-tune now" train on."""

from __future__ import annotations

import pytest

from tests.tutor.core.runs.fakes import (
    LEGACY_RULES,
    ScriptedLLM,
    add_items,
    mini_course,
    student_reply,
    teacher_reply,
)
from tutor.core.courses.course import ExamLeakError
from tutor.core.runs import RunConfig, run_teaching
from tutor.core.runs.state import Explanation
from tutor.core.runs.steps import feedback_records

ONE, TWO = (
    RunConfig(**LEGACY_RULES, rounds=n, plan_budget=4, explain_budget=4, generate_budget=0, generate_k=0)
    for n in (1, 2)
)


def models():
    return ScriptedLLM("teacher", teacher_reply(generate=add_items)), ScriptedLLM("student", student_reply())


def explanation(
    id: str,
    item: str,
    text: str,
    approved: bool | None,
    *,
    edited: str | None = None,
    quotes_exam: bool = False,
) -> Explanation:
    return Explanation(
        id=id,
        round=0,
        item=item,
        skill="add_1d",
        split="train",
        student_answer="Answer: 999999",
        text=text,
        teacher_answer=None,
        passed_gate=True,
        approved=approved,
        edited=edited,
        quotes_exam=quotes_exam,
    )


def test_it_keeps_the_students_answer_after_the_explanation(tmp_path):
    teacher, student = models()
    state = run_teaching(
        mini_course(), teacher, student, ONE, tmp_path / "s.json", train_fn=lambda *a, **k: None
    )
    scored = [x for x in state.rounds[0].explanations if x.passed_gate]
    assert scored
    # The scripted student answers right with a helpful explanation in context, wrong without.
    assert all(x.answer_after.startswith("Let me think.") and "999999" not in x.answer_after for x in scored)
    assert all("999999" in x.student_answer for x in scored)


def test_it_trains_the_next_round_on_a_persons_edit_instead_of_the_teachers_text(tmp_path):
    teacher, student = models()
    trained: list[list[dict]] = []

    def train(records, index, parent, **_):
        trained.append(records)
        return f"/adapters/round{index}"

    state = run_teaching(mini_course(), teacher, student, ONE, tmp_path / "s.json", train_fn=train)
    target = state.rounds[0].explanations[0]
    edit = "Mistake: none.\nSolution: line the digits up, then add. EDITED BY A PERSON\nAnswer: 7"
    state = run_teaching(
        mini_course(),
        teacher,
        student,
        TWO,
        tmp_path / "s.json",
        train_fn=train,
        ratings=lambda: {target.id: True},
        edits=lambda: {target.id: edit},
    )

    edited = [r for r in state.rounds[1].sft_records if r["meta"].get("explanation") == target.id]
    assert [r["messages"][-1]["content"] for r in edited] == [
        "line the digits up, then add. EDITED BY A PERSON\nAnswer: 7"
    ]
    assert edited[0]["meta"]["edited"] is True
    # The teacher's next explanations of the skill see the edit as what helped before.
    later_prompts = [c[-1]["content"] for c in teacher.seen("explain")[len(state.rounds[0].explanations) :]]
    assert any("EDITED BY A PERSON" in p for p in later_prompts)


def test_it_ignores_an_edit_that_quotes_an_exam_question(tmp_path):
    course = mini_course()
    teacher, student = models()
    state = run_teaching(course, teacher, student, ONE, tmp_path / "s.json", train_fn=lambda *a, **k: None)
    target = state.rounds[0].explanations[0]
    leak = f"Solution: see {course.split('exam')[0].prompt}\nAnswer: 1"
    state = run_teaching(
        course,
        teacher,
        student,
        TWO,
        tmp_path / "s.json",
        train_fn=lambda *a, **k: None,
        ratings=lambda: {target.id: True},
        edits=lambda: {target.id: leak},
    )
    assert state.rounds[0].explanations[0].edited is None
    assert all(
        course.split("exam")[0].prompt not in r["messages"][-1]["content"]
        for r in state.rounds[1].sft_records
    )


def test_it_builds_feedback_records_from_approvals_edits_and_rejections():
    course = mini_course()
    a, b = course.exercises_for("add_1d", "train")[:2]
    sft, pairs = feedback_records(
        course,
        [
            explanation(
                "up",
                a.key,
                "Mistake: x.\nSolution: teacher text\nAnswer: 1",
                True,
                edited="Mistake: x.\nSolution: better text\nAnswer: 1",
            ),
            explanation("down", a.key, "Mistake: y.\nSolution: confusing text\nAnswer: 1", False),
            explanation("unrated", a.key, "Solution: unrated text\nAnswer: 1", None),
            explanation("alone", b.key, "Solution: another\nAnswer: 2", True),
        ],
    )
    assert [(r["meta"]["explanation"], r["messages"][-1]["content"]) for r in sft] == [
        ("up", "better text\nAnswer: 1"),
        ("alone", "another\nAnswer: 2"),
    ]
    assert [(p["meta"]["chosen"], p["meta"]["rejected"]) for p in pairs] == [("up", "down")]
    assert pairs[0]["chosen"][0]["content"] == "better text\nAnswer: 1"
    assert pairs[0]["rejected"][0]["content"] == "confusing text\nAnswer: 1"


def test_it_never_builds_feedback_records_from_exam_questions():
    course = mini_course()
    item = course.exercises_for("add_1d", "train")[0]
    quoted = explanation("q", item.key, "Solution: x\nAnswer: 1", True, quotes_exam=True)
    assert feedback_records(course, [quoted]) == ([], [])
    leak = explanation(
        "e",
        item.key,
        "Solution: x\nAnswer: 1",
        True,
        edited=f"Solution: {course.split('exam')[0].prompt}\nAnswer: 1",
    )
    with pytest.raises(ExamLeakError):
        feedback_records(course, [leak])


def test_it_never_replays_an_explanation_a_person_rejected_after_it_trained(tmp_path):
    teacher, student = models()
    config = RunConfig(
        **LEGACY_RULES,
        rounds=1,
        plan_budget=4,
        explain_budget=4,
        generate_budget=0,
        generate_k=0,
        replay_share=0.9,
    )
    state = run_teaching(
        mini_course(), teacher, student, config, tmp_path / "s.json", train_fn=lambda r, i, p, **k: f"/a{i}"
    )
    trained = [r["meta"]["explanation"] for r in state.rounds[0].sft_records]
    assert trained
    rejected = {trained[0]: False}
    state = run_teaching(
        mini_course(),
        teacher,
        student,
        RunConfig(**{**config.to_dict(), "rounds": 2}),
        tmp_path / "s.json",
        train_fn=lambda r, i, p, **k: f"/a{i}",
        ratings=lambda: rejected,
    )
    again = [r["meta"].get("explanation") for r in state.rounds[1].sft_records]
    assert state.rounds[1].replayed > 0 and trained[0] not in again

"""Whole teaching runs with scripted models: the exam guard end to end, resuming, stopping, ratings."""

from __future__ import annotations

import json
import re

import pytest

from tests.tutor.core.runs.fakes import (
    LEGACY_RULES,
    ScriptedLLM,
    add_items,
    mini_course,
    student_reply,
    teacher_reply,
)
from tutor.core.runs import STEPS, RunConfig, RunState, TeachingError, run_teaching

CONFIG = RunConfig(
    **LEGACY_RULES, rounds=2, plan_budget=4, explain_budget=4, generate_budget=2, generate_k=2, siblings=2
)


class Trainer:
    """A train_fn that records what it was given and returns a fake adapter folder."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str | None]] = []

    def __call__(self, records, index, parent, **_):
        self.calls.append((index, len(records), parent))
        return f"/adapters/round{index}"


def plain_models():
    """A student who never learns (so every round has wrong answers) and a correct teacher."""
    return (
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student_reply()),
    )


def test_it_keeps_exam_items_out_of_explanations_generated_items_and_records(tmp_path):
    course = mini_course()
    exam = course.split("exam")
    exam_prompts = [e.prompt for e in exam]

    def cheat_items(question):  # the teacher "generates" exam questions among honest items
        copies = [f"---\nQuestion: {e.prompt}\nSolution: copied.\nAnswer: {e.answer}\n" for e in exam[:2]]
        return add_items(question) + "".join(copies)

    # Every explanation quotes an exam question as a "similar example".
    teacher = ScriptedLLM("teacher", teacher_reply(generate=cheat_items, extra=f"\nLike: {exam_prompts[0]}"))
    student = ScriptedLLM("student", student_reply())
    honest = ScriptedLLM("teacher", teacher_reply(generate=add_items))
    config = RunConfig(
        **LEGACY_RULES, rounds=2, plan_budget=4, explain_budget=4, generate_budget=2, generate_k=4
    )
    state = run_teaching(course, teacher, student, config, tmp_path / "state.json", train_fn=Trainer())

    def has_exam(text: str) -> bool:
        return any(re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text) for p in exam_prompts)

    # What the teacher was asked to explain or imitate never held an exam question.
    assert not [c for kind in ("explain", "generate") for c in teacher.seen(kind) if has_exam(json.dumps(c))]
    explanations = [x for r in state.rounds for x in r.explanations]
    assert explanations and all(x.split != "exam" for x in explanations)
    assert all(not x.passed_gate and x.quotes_exam and not x.helped for x in explanations)
    generated = [g for r in state.rounds for g in r.generated]
    copies = [g for g in generated if g.prompt in exam_prompts]
    assert copies and all(not g.kept and g.reason == "copies an exam question" for g in copies)
    assert any(g.kept for g in generated)
    records = [rec for r in state.rounds for rec in r.sft_records + r.dpo_records]
    assert records and not [rec for rec in records if has_exam(json.dumps(rec))]
    exam_keys = {e.key for e in exam}
    named = [{rec["meta"].get("item"), rec["meta"].get("source_item")} for rec in records]
    assert not [keys for keys in named if keys & exam_keys]
    # Answering exam items is fine (once, cached); it is the only thing the teacher did with them.
    assert set(state.teacher_exam) == exam_keys and teacher.count("answer") == 1

    # The same run with an honest teacher trains on explanations too.
    state = run_teaching(course, honest, student, config, tmp_path / "honest.json", train_fn=Trainer())
    sources = {rec["meta"]["source"] for r in state.rounds for rec in r.sft_records}
    assert sources == {"explanation", "generated"}


def test_it_resumes_after_an_exception_without_repeating_teacher_calls(tmp_path):
    course = mini_course()
    path = tmp_path / "state.json"
    teacher, student = plain_models()
    trainer = Trainer()
    seen = []

    def crash_after_explain_of_round_1(step, index, info):
        seen.append((step, index, info["status"]))
        if (step, index, info["status"]) == ("explain", 1, "done"):
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError, match="worker killed"):
        run_teaching(
            course, teacher, student, CONFIG, path, train_fn=trainer, progress=crash_after_explain_of_round_1
        )
    saved = RunState.load(path)
    assert saved.rounds[1].done_steps == ["diagnose", "plan", "explain"] and not saved.finished
    assert (teacher.count("explain"), teacher.count("generate")) == (2, 1)

    # A fresh process: new model objects, the state file is all that is left.
    teacher2, student2 = plain_models()
    state = run_teaching(course, teacher2, student2, CONFIG, path, train_fn=trainer)
    assert state.finished and all(r.done_steps == list(STEPS) for r in state.rounds)
    assert teacher2.count("explain") == 0 and teacher2.count("generate") == 1  # only round 1's generate
    assert teacher.count("answer") + teacher2.count("answer") == 1  # exam answers cached from round 0
    assert student2.loaded[0] == ("round0", "/adapters/round0")  # the adapter is put back first
    assert [c[0] for c in trainer.calls] == [0, 1] and trainer.calls[1][2] == "/adapters/round0"
    assert next(call.adapter for call in student2.calls) == "round0"
    assert [(x.id, x.text) for x in state.rounds[1].explanations] == [
        (x.id, x.text) for x in saved.rounds[1].explanations
    ]  # kept, then scored: not asked again
    assert (state.adapter_name, state.adapter_path) == ("round1", "/adapters/round1")


def test_it_stops_when_asked_and_goes_on_from_there(tmp_path):
    course = mini_course()
    path = tmp_path / "state.json"
    teacher, student = plain_models()
    done: list[tuple[str, int]] = []

    def progress(step, index, info):
        if info["status"] == "done":
            done.append((step, index))

    state = run_teaching(
        course,
        teacher,
        student,
        CONFIG,
        path,
        train_fn=Trainer(),
        progress=progress,
        should_stop=lambda: ("explain", 1) in done,
    )
    assert not state.finished and state.rounds[1].done_steps == ["diagnose", "plan", "explain"]
    assert RunState.load(path) == state

    teacher2, student2 = plain_models()
    state = run_teaching(course, teacher2, student2, CONFIG, path, train_fn=Trainer())
    assert state.finished and teacher2.count("explain") == 0


def test_it_refuses_to_resume_with_other_settings_but_may_add_rounds(tmp_path):
    course = mini_course()
    path = tmp_path / "state.json"
    teacher, student = plain_models()
    run_teaching(
        course,
        teacher,
        student,
        RunConfig(**LEGACY_RULES, rounds=1, plan_budget=4, explain_budget=2),
        path,
        train_fn=Trainer(),
    )
    with pytest.raises(TeachingError, match="explain_budget"):
        run_teaching(
            course,
            teacher,
            student,
            RunConfig(**LEGACY_RULES, rounds=1, plan_budget=4, explain_budget=3),
            path,
            train_fn=Trainer(),
        )
    state = run_teaching(
        course,
        teacher,
        student,
        RunConfig(**LEGACY_RULES, rounds=2, plan_budget=4, explain_budget=2),
        path,
        train_fn=Trainer(),
    )
    assert state.finished and len(state.rounds) == 2 and teacher.count("explain") == 2


def test_it_shows_the_teacher_what_helped_this_student_before_and_applies_ratings(tmp_path):
    course = mini_course()
    teacher, student = plain_models()
    ratings: dict[str, bool] = {}
    one, two = (RunConfig(**LEGACY_RULES, rounds=n, plan_budget=4, explain_budget=4) for n in (1, 2))
    state = run_teaching(
        course, teacher, student, one, tmp_path / "s.json", train_fn=Trainer(), ratings=lambda: ratings
    )
    first = state.rounds[0].explanations
    rejected = next(x for x in first if x.helped)
    ratings[rejected.id] = False  # a person rejects one helpful explanation between rounds

    state = run_teaching(
        course, teacher, student, two, tmp_path / "s.json", train_fn=Trainer(), ratings=lambda: ratings
    )
    assert next(x for x in state.rounds[0].explanations if x.id == rejected.id).approved is False
    later = state.rounds[1].explanations
    shown = {h for x in later for h in x.shown_helpful}
    assert shown and rejected.id not in shown
    prompts = [c[-1]["content"] for c in teacher.seen("explain")[len(first) :]]
    assert any("Explanations that helped this student before" in p for p in prompts)
    for x in later:
        assert len(x.shown_helpful) <= 2
        assert all(h.split("-", 1)[1].startswith(x.skill) for h in x.shown_helpful)  # same skill only


def test_it_batches_every_step_and_records_exam_results(tmp_path):
    course = mini_course(probe=4)  # 0 of 4 right on add_1d shows it below 0.5 (upper bound 0.49)
    teacher, student = plain_models()
    events = []
    state = run_teaching(
        course,
        teacher,
        student,
        CONFIG,
        tmp_path / "s.json",
        train_fn=Trainer(),
        progress=lambda step, index, info: events.append((step, index, info["status"])),
    )
    # Per round: diagnose, practice, score, exam (student); explain, generate (teacher).
    # Once: the base model's exam (student, no adapter) and the teacher's exam answers.
    assert len(student.calls) == 2 * 4 + 1 and len(teacher.calls) == 2 * 2 + 1
    assert events == [(s, i, status) for i in range(2) for s in STEPS for status in ("started", "done")]
    exam = state.rounds[1].exam
    assert set(exam["per_skill"]) == {"add_1d", "add_2d", "mul_1d"}
    assert exam["accuracy"] == exam["base_accuracy"] == 0.0 and exam["teacher_accuracy"] == 1.0
    assert exam["vs_base"] == exam["vs_previous"] == 0.0 and "agreement" in exam
    assert (
        state.rounds[0].plan["items_per_skill"]["add_2d"] == 0
    )  # locked until add_1d reaches the unlock threshold
    taught = {s for s, n in state.rounds[1].plan["items_per_skill"].items() if n}
    assert set(exam["forgetting"]) == {"add_1d", "add_2d", "mul_1d"} - taught


def test_it_runs_the_random_control_arm_over_all_skills(tmp_path):
    course = mini_course()
    teacher, student = plain_models()
    config = RunConfig(**LEGACY_RULES, rounds=1, plan="random", plan_budget=12)
    state = run_teaching(course, teacher, student, config, tmp_path / "s.json", train_fn=Trainer())
    plan = state.rounds[0].plan
    # Prerequisites ignored: add_2d is drawn although add_1d is far from mastered.
    assert plan["items_per_skill"]["add_2d"] > 0 and state.rounds[0].probe_accuracy["add_1d"] == 0.0
    assert set(plan["reasons"].values()) == {"random control: uniform over all skills"}

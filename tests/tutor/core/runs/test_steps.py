"""The steps of a teaching round, one at a time, with scripted teacher and student."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from tests.tutor.core.runs.fakes import (
    ScriptedLLM,
    add_items,
    context,
    mini_course,
    student_reply,
    teacher_reply,
)
from tutor.core.courses.course import Course, ExamLeakError, Exercise, Skill
from tutor.core.runs import steps
from tutor.core.runs.prompts import parse_generated, solution_part
from tutor.core.runs.state import Answer, Explanation, GeneratedItem, RoundState, RunConfig, RunState
from tutor.core.runs.steps import feedback_records, least_trained_first, replay_count, teacher_hacking_warning


def run_steps(ctx, rnd, *names):
    return [steps.STEP_FUNCTIONS[name](ctx, rnd) for name in names]


def test_it_drops_explanations_whose_final_answer_is_wrong_and_counts_them():
    course = mini_course()
    bad = {e.prompt for e in course.exercises_for("add_1d", "train")}
    teacher = ScriptedLLM("teacher", teacher_reply(wrong_on=lambda q: q in bad))
    ctx = context(course, teacher, ScriptedLLM("student", student_reply()), explain_budget=6, plan_budget=6)
    rnd = ctx.state.round(0)
    *_, info = run_steps(ctx, rnd, "diagnose", "plan", "explain")

    dropped = [x for x in rnd.explanations if not x.passed_gate]
    assert info["explained"] == 6 and info["dropped"] == len(dropped) == rnd.dropped_explanations
    assert dropped and all(ctx.items[x.item].prompt in bad for x in dropped)
    assert all(x.teacher_answer == "999999" and "wrong" in x.gate_reason for x in dropped)
    assert teacher.count("explain") == 1  # one batch for every explanation of the round

    run_steps(ctx, rnd, "score", "generate", "build_data")
    assert all(x.score is None for x in dropped)  # never scored
    trained_on = {r["meta"]["explanation"] for r in rnd.sft_records if r["meta"]["source"] == "explanation"}
    assert trained_on and not trained_on & {x.id for x in dropped}


def test_the_gate_never_trains_on_a_text_that_loops_or_is_cut_off():
    course = mini_course()
    ctx = context(course, ScriptedLLM("teacher", teacher_reply()), ScriptedLLM("student", student_reply()))
    item = course.exercises_for("add_1d", "train")[0]
    right = f"{item.solution}" if item.solution else f"Answer: {item.answer}"
    assert ctx.check(item, right).ok
    looping = ctx.check(item, f"{right}\nThe answer is {item.answer}. The answer is {item.answer}.")
    assert not looping.ok and "repeats itself" in looping.reason
    cut = ctx.check(item, f"{right}\nAnd that is why we carry the")
    assert not cut.ok and "mid-sentence" in cut.reason


def test_it_scores_an_explanation_by_the_change_in_correctness(monkeypatch):
    course = mini_course()
    item, known, unknown = course.exercises_for("add_1d", "train")[:3]
    student = ScriptedLLM("student", student_reply(knows=lambda q, adapter: q == known.prompt))
    ctx = context(course, ScriptedLLM("teacher", teacher_reply()), student, siblings=2)
    rnd = ctx.state.round(0)
    rnd.answers[item.key] = Answer(item.key, "Answer: 1", "1", False)
    rnd.explanations = [
        Explanation(
            id="helpful",
            round=0,
            item=item.key,
            skill=item.skill,
            split="train",
            student_answer="1",
            text="Solution: add.\nAnswer: 5",
            teacher_answer="5",
            passed_gate=True,
        ),
        Explanation(
            id="useless",
            round=0,
            item=item.key,
            skill=item.skill,
            split="train",
            student_answer="1",
            text="UNHELPFUL\nAnswer: 5",
            teacher_answer="5",
            passed_gate=True,
        ),
    ]
    monkeypatch.setattr(steps, "siblings_of", lambda ctx, e, n, i: [known, unknown])
    info = steps.score(ctx, rnd)

    helpful, useless = rnd.explanations
    assert helpful.before == useless.before == [False, True, False]
    assert helpful.after == [True, True, True] and helpful.score == pytest.approx(1 - 1 / 3, abs=1e-4)
    assert useless.after == [False, True, False] and useless.score == 0.0
    assert info == {"scored": 2, "mean_score": pytest.approx(1 / 3, abs=1e-4), "helped": 1}
    assert len(student.calls) == 1  # missing "before" answers and all "after" answers in one batch
    assert rnd.answers[unknown.key].correct is False  # the sibling's before-answer is kept for the round


def test_it_keeps_generated_items_only_when_the_solver_confirms_them_with_provenance():
    course = mini_course()
    exam_prompt = course.split("exam")[0].prompt

    def items(question):
        return add_items(question) + (
            f"---\nQuestion: {exam_prompt}\nSolution: copy.\nAnswer: {0}\n"
            "---\nQuestion: What is 1 + 1?\nAnswer: 2\n"
        )  # no solution: not parsed

    teacher = ScriptedLLM("big-teacher", teacher_reply(generate=items))
    ctx = context(course, teacher, ScriptedLLM("student", student_reply()), generate_k=4, generate_budget=2)
    rnd = ctx.state.round(0)
    *_, info = run_steps(ctx, rnd, "diagnose", "plan", "explain", "score", "generate")

    assert info["sources"] == 2 and teacher.count("generate") == 1
    kept = [g for g in rnd.generated if g.kept]
    dropped = [g for g in rnd.generated if not g.kept]
    assert kept and all(g.verified_by == "solver" for g in kept)
    assert {g.reason for g in dropped} >= {"the code solver disagrees with the stated answer"}
    for g in rnd.generated:
        source = ctx.items[g.source_item]
        assert (g.round, g.teacher, g.skill, source.split) == (0, "big-teacher", source.skill, "train")
        assert source.key in rnd.planned_items and not rnd.answers[source.key].correct
    assert all(g.prompt != exam_prompt for g in kept)
    assert teacher.count("answer") == 0  # everything was readable by the solver: no second sample

    steps.build_data(ctx, rnd)
    generated = [r for r in rnd.sft_records if r["meta"]["source"] == "generated"]
    assert sorted(r["meta"]["item"] for r in generated) == sorted(g.key for g in kept)
    assert all(r["meta"]["source_item"] and r["meta"]["teacher"] == "big-teacher" for r in generated)
    for record, item in zip(generated, kept, strict=True):
        assert record["messages"][-1]["content"].endswith(f"Answer: {item.answer}")


def capitals_course() -> Course:
    rows = [
        ("c1", "What is the capital of France?", "Paris", "train"),
        ("c2", "What is the capital of Japan?", "Tokyo", "train"),
        ("c3", "What is the capital of Peru?", "Lima", "probe"),
        ("c4", "What is the capital of Chile?", "Santiago", "exam"),
    ]
    exercises = tuple(
        Exercise(key=k, skill="capitals", prompt=p, answer=a, answer_type="text", split=s)
        for k, p, a, s in rows
    )
    return Course(
        key="capitals", name="Capitals", skills=(Skill("capitals", "Capitals"),), exercises=exercises
    )


CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Italy": "Rome",
    "Spain": "Madrid",
}


def capital(question: str) -> str:
    return next(city for country, city in CAPITALS.items() if country in question)


def test_it_checks_items_without_a_solver_against_a_second_teacher_answer():
    course = capitals_course()

    def items(question):
        return (
            "Question: What is the capital of Italy?\nSolution: The seat of government.\nAnswer: Rome\n"
            "---\nQuestion: What is the capital of Spain?\nSolution: The largest city.\n"
            "Answer: Barcelona\n"
        )

    teacher = ScriptedLLM("teacher", teacher_reply(generate=items, gold=capital))
    ctx = context(course, teacher, ScriptedLLM("student", student_reply(gold=capital)), generate_budget=1)
    rnd = ctx.state.round(0)
    run_steps(ctx, rnd, "diagnose", "plan", "explain", "score", "generate")

    by_prompt = {g.prompt: g for g in rnd.generated}
    italy, spain = by_prompt["What is the capital of Italy?"], by_prompt["What is the capital of Spain?"]
    assert (italy.kept, italy.verified_by) == (True, "teacher_agreement")
    assert (spain.kept, spain.reason) == (False, "a second teacher answer disagrees with the stated answer")
    assert teacher.count("generate") == 1 and teacher.count("answer") == 1  # both checks in one batch
    assert len(teacher.seen("answer")) == 2


def test_it_mixes_in_the_replay_share_of_earlier_rounds():
    course = mini_course()
    ctx = context(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        replay_share=0.3,
    )
    first = ctx.state.round(0)
    first.sft_records = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": f"Answer: {2 * i}"},
            ],
            "meta": {"source": "generated", "item": f"old-{i}", "round": 0},
        }
        for i in range(100, 110)
    ]
    second = ctx.state.round(1)
    second.generated = _kept_items("add_2d", [(f"What is {i} + 1?", i + 1) for i in range(200, 207)])
    info = steps.build_data(ctx, second)

    assert info == {"sft": 10, "new": 7, "replayed": 3, "keep": 0, "dpo": 0}  # round(7 * 0.3 / 0.7) = 3
    replayed = [r for r in second.sft_records if "replayed_from" in r["meta"]]
    assert len(replayed) == 3 and all(r["meta"]["replayed_from"] == 0 for r in replayed)
    assert len({r["meta"]["item"] for r in replayed}) == 3
    assert all(r["meta"]["item"].startswith("old-") for r in replayed)


def _record(skill: str, i: int, round_index: int = 0) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"{skill} question {i}"},
            {"role": "assistant", "content": f"Answer: {i}"},
        ],
        "meta": {"source": "generated", "item": f"{skill}-{i}", "skill": skill, "round": round_index},
    }


def _kept_items(skill: str, asked: list[tuple[str, int]]) -> list[GeneratedItem]:
    """Round 1's kept new items of ``skill``: (question, answer) each."""
    return [
        GeneratedItem(
            key=f"gen-{i}",
            skill=skill,
            prompt=question,
            answer=str(answer),
            answer_type="number",
            solution=f"Answer: {answer}",
            difficulty=1,
            source_item=f"{skill}-train-000",
            round=1,
            teacher="t",
            kept=True,
        )
        for i, (question, answer) in enumerate(asked)
    ]


@pytest.mark.parametrize("mix", ["least_trained", "random"])
def test_replay_goes_to_the_skill_this_round_does_not_train(mix):
    """Round 0 trained sums and (more) products; round 1 trains products only. With the default mix the
    replay is all sums (the skill left without practice); a random draw (the old rule) replays mostly
    products, which this round has plenty of."""
    ctx = context(
        mini_course(),
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        replay_share=0.3,
        replay_mix=mix,
    )
    ctx.state.round(0).sft_records = [_record("add_1d", i) for i in range(10)] + [
        _record("mul_1d", i) for i in range(40)
    ]
    second = ctx.state.round(1)  # all products: the shape of the defaults' round 1 on seed 0
    second.generated = _kept_items("mul_1d", [(f"What is {i} x 3?", 3 * i) for i in range(20, 34)])
    info = steps.build_data(ctx, second)

    assert info["replayed"] == 6  # round(14 * 0.3 / 0.7)
    replayed = [r for r in second.sft_records if "replayed_from" in r["meta"]]
    sums = sum(r["meta"]["skill"] == "add_1d" for r in replayed)
    assert sums == 6 if mix == "least_trained" else sums < 6


def test_least_trained_first_levels_the_skills_and_stops_where_the_pool_ends():
    import random

    pool = (
        [_record("a", i) for i in range(10)]
        + [_record("b", i) for i in range(10)]
        + [_record("c", i) for i in range(2)]
    )
    chosen = least_trained_first(pool, Counter({"a": 0, "b": 2, "c": 0}), 8, random.Random(0))
    taken = Counter(r["meta"]["skill"] for r in chosen)
    # c has only 2; then a and b are filled to the same level (a 0 -> 4, b 2 -> 4): 2 + 4 + 2 = 8
    assert taken == {"a": 4, "b": 2, "c": 2}
    assert len({id(r) for r in chosen}) == 8  # no record twice
    everything = least_trained_first(pool, Counter(), 50, random.Random(0))
    assert len(everything) == len(pool) == len({id(r) for r in everything})  # asked for more: all, once
    same = least_trained_first(pool, Counter({"b": 2}), 8, random.Random(0))
    assert [r["meta"]["item"] for r in same] == [r["meta"]["item"] for r in chosen]  # seeded


@pytest.mark.parametrize(
    ("new", "available", "share", "expected"),
    [
        (7, 10, 0.3, 3),
        (10, 100, 0.5, 10),
        (10, 2, 0.5, 2),
        (10, 100, 0.0, 0),
        (0, 100, 0.3, 0),
    ],
)
def test_it_counts_replayed_records_as_a_share_of_the_set(new, available, share, expected):
    assert replay_count(new, available, share) == expected


def test_it_refuses_an_exam_item_among_the_practice_items():
    course = mini_course()
    teacher = ScriptedLLM("teacher", teacher_reply())
    ctx = context(course, teacher, ScriptedLLM("student", student_reply()))
    rnd = ctx.state.round(0)
    run_steps(ctx, rnd, "diagnose", "plan")
    rnd.planned_items.append(course.split("exam")[0].key)  # a bug upstream: an exam item to practise
    with pytest.raises(ExamLeakError):
        steps.explain(ctx, rnd)
    assert teacher.count("explain") == 0  # refused before the teacher saw anything


def test_it_never_explains_or_trains_on_probe_items():
    course = mini_course()
    teacher = ScriptedLLM("teacher", teacher_reply(generate=add_items))
    # The student gets every practice item right and every probe item wrong: nothing to explain.
    probe = {e.prompt for e in course.split("probe")}
    ctx = context(course, teacher, ScriptedLLM("student", student_reply(knows=lambda q, a: q not in probe)))
    rnd = ctx.state.round(0)
    *_, info = run_steps(ctx, rnd, "diagnose", "plan", "explain")
    assert rnd.wrong and {ctx.items[k].split for k in rnd.wrong} == {"probe"}
    assert info["explained"] == 0 and not rnd.explanations and teacher.count("explain") == 0

    # A state saved before this rule holds an approved probe explanation: it never becomes a record.
    probe_item = ctx.items[rnd.wrong[0]]
    rnd.explanations.append(
        Explanation(
            id="r0-old",
            round=0,
            item=probe_item.key,
            skill=probe_item.skill,
            split="probe",
            student_answer="1",
            text=f"Solution: work it out.\nAnswer: {probe_item.answer}",
            teacher_answer=probe_item.answer,
            passed_gate=True,
            score=1.0,
            approved=True,
        )
    )
    run_steps(ctx, rnd, "score", "generate", "build_data")
    assert not [r for r in rnd.sft_records + rnd.dpo_records if r["meta"].get("item") == probe_item.key]
    sft, pairs = feedback_records(course, rnd.explanations)
    assert not sft and not pairs


@pytest.mark.parametrize(
    ("agreement", "accuracy", "warns"),
    [
        ((0.50, 0.70), (0.40, 0.40), True),  # copies the teacher, gold stalls
        ((0.50, 0.61), (0.40, 0.41), True),  # +0.11 agreement, +0.01 accuracy
        ((0.50, 0.70), (0.40, 0.30), True),  # gold even falls
        ((0.50, 0.70), (0.40, 0.50), False),  # agreement rises with real progress
        ((0.50, 0.55), (0.40, 0.40), False),  # agreement rises too little to tell
        ((None, 0.70), (0.40, 0.40), False),  # nothing to compare with
    ],
)
def test_it_warns_of_teacher_hacking_on_synthetic_numbers(agreement, accuracy, warns):
    warning = teacher_hacking_warning(
        agreement[0], agreement[1], accuracy[0], accuracy[1], rise=0.10, stall=0.02
    )
    assert (warning is not None) == warns
    if warns:
        assert "teacher hacking" in warning


def test_it_warns_when_the_trained_student_copies_the_teachers_wrong_exam_answers():
    course = mini_course()
    teacher = ScriptedLLM("teacher", lambda kind, q, c, adapter: "Answer: 123456")  # wrong on every exam item
    student = ScriptedLLM("student", lambda kind, q, c, adapter: "Answer: 123456" if adapter else "Answer: 7")
    ctx = context(course, teacher, student)
    ctx.state.adapter_name, ctx.state.adapter_path = "round0", "/adapters/round0"
    rnd = ctx.state.round(0)
    rnd.plan = {"items_per_skill": {"add_1d": 1}}
    info = steps.reexamine(ctx, rnd)

    assert rnd.exam["base_agreement"] == 0.0 and rnd.exam["agreement"] == 1.0
    assert rnd.exam["agreement_on_teacher_errors"] == 1.0 and rnd.exam["teacher_accuracy"] == 0.0
    assert info["warning"] and rnd.warnings == [info["warning"]]
    assert [call.adapter for call in student.calls] == ["round0", None]  # the new adapter, then the base once


def test_it_parses_generated_items_in_the_strict_format():
    text = (
        "Sure!\nQuestion: What is 12 + 30?\nSolution: 2 + 0 = 2.\n1 + 3 = 4.\nAnswer: 42\n"
        "Hope it helps.\n---\nQuestion: Pick one\nOptions: red | blue\nSolution: blue.\nAnswer: blue\n"
        "---\nQuestion: broken\n"
    )
    first, second = parse_generated(text)
    assert (first.question, first.answer) == ("What is 12 + 30?", "42")
    assert first.solution == "2 + 0 = 2.\n1 + 3 = 4.\nAnswer: 42"
    assert second.options == ("red", "blue")
    assert solution_part("Mistake: you forgot.\nSolution: carry.\nAnswer: 3") == "carry.\nAnswer: 3"


def test_it_round_trips_the_state_through_an_atomic_save(tmp_path):
    state = RunState(config=RunConfig(rounds=2), course="mini", teacher="t", student="s")
    rnd = state.round(1)
    rnd.answers["a"] = Answer("a", "Answer: 3", "3", True)
    rnd.explanations.append(
        Explanation(
            id="r1-a",
            round=1,
            item="a",
            skill="k",
            split="train",
            student_answer="2",
            text="Answer: 3",
            teacher_answer="3",
            passed_gate=True,
            score=0.5,
        )
    )
    rnd.generated.append(
        GeneratedItem(
            key="g",
            skill="k",
            prompt="p",
            answer="1",
            answer_type="number",
            solution="Answer: 1",
            difficulty=1,
            source_item="a",
            round=1,
            teacher="t",
        )
    )
    path = tmp_path / "run" / "state.json"
    state.save(path)
    state.save(path)
    assert RunState.load(path) == state
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary files left
    assert isinstance(RunState.load(path).rounds[1], RoundState) and RunState.load(path).rounds[0].index == 0


def test_a_state_saved_before_the_levels_setting_resumes_with_the_old_rule():
    saved = RunConfig(levels="stretch").to_dict()
    del saved["levels"]
    assert RunConfig.from_dict(saved).levels == "stretch"
    assert RunConfig.from_dict(RunConfig().to_dict()).levels == "window"


@pytest.mark.parametrize(
    "bad",
    [
        {"plan": "greedy"},
        {"siblings": 4},
        {"replay_share": 1.0},
        {"rounds": 0},
        {"explain_budget": True},
        {"stretch_share": 1.5},
        {"stretch_share": -0.1},
        {"levels": "all"},
        {"replay_mix": "proportional"},
    ],
)
def test_it_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        RunConfig(**bad)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5])
def test_it_stretches_a_share_of_the_practice_to_the_level_above(share):
    course = mini_course(train=40)  # enough items at each level for the whole plan
    student = ScriptedLLM("student", student_reply())
    ctx = context(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        student,
        plan_budget=12,
        levels="stretch",
        stretch_share=share,
    )
    rnd = ctx.state.round(0)
    run_steps(ctx, rnd, "diagnose", "plan")
    planned = [ctx.items[k] for k in rnd.planned_items]
    for skill, count in rnd.plan["items_per_skill"].items():
        if not count:
            continue
        level = rnd.plan["difficulty_per_skill"][skill]
        levels = [e.difficulty for e in planned if e.skill == skill]
        up = round(count * share)
        assert len(levels) == count
        assert levels == [level] * (count - up) + [level + 1] * up  # the planned level first
        assert rnd.plan["stretch_per_skill"].get(skill, 0) == up


def test_it_spreads_the_practice_over_the_levels_not_passed_by_default():
    course = mini_course(train=40)
    assert RunConfig().levels == "window"
    ctx = context(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        plan_budget=13,
    )
    rnd = ctx.state.round(0)
    run_steps(ctx, rnd, "diagnose", "plan")
    for skill, count in rnd.plan["items_per_skill"].items():
        if not count:
            continue
        levels = [ctx.items[k].difficulty for k in rnd.planned_items if ctx.items[k].skill == skill]
        top = course.max_difficulty(skill)
        assert rnd.plan["difficulty_per_skill"][skill] == 1 and len(levels) == count
        per_level = [levels.count(lv) for lv in range(1, top + 1)]
        assert max(per_level) - min(per_level) <= 1 and per_level == sorted(per_level, reverse=True)
        assert levels[:top] == list(range(1, min(top, count) + 1))  # interleaved, the planned level first
        assert rnd.plan["stretch_per_skill"][skill] == count - per_level[0]


def test_the_window_starts_at_the_planned_level_and_fills_from_its_nearest_items():
    course = mini_course(train=40)
    ctx = context(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        rounds=2,
        plan_budget=12,
    )
    first = ctx.state.round(0)
    first.probe_accuracy = {"add_1d": 0.6, "add_2d": 0.5, "mul_1d": 0.1}
    first.plan = {"difficulty_per_skill": {"add_1d": 2, "add_2d": 2, "mul_1d": 1}}
    rnd = ctx.state.round(1)
    rnd.probe_accuracy = {"add_1d": 0.7, "add_2d": 0.75, "mul_1d": 0.3}  # as diagnose would leave it
    run_steps(ctx, rnd, "plan")
    levels = {
        skill: [ctx.items[k].difficulty for k in rnd.planned_items if ctx.items[k].skill == skill]
        for skill in rnd.plan["items_per_skill"]
    }
    assert rnd.plan["difficulty_per_skill"]["add_2d"] == 3  # escalated: the window is its top level alone
    assert set(levels["add_2d"]) <= {3} and "add_2d" not in rnd.plan["stretch_per_skill"]
    assert levels["mul_1d"] and min(levels["mul_1d"]) == 1 and max(levels["mul_1d"]) == 3

    # A level without enough items: the rest come from the items nearest the planned level.
    short = Course(
        key=course.key,
        name=course.name,
        skills=course.skills,
        exercises=tuple(
            e
            for e in course.exercises
            if not (e.skill == "mul_1d" and e.difficulty == 3 and e.split == "train")
        ),
    )
    ctx = context(
        short,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        plan_budget=12,
    )
    rnd = ctx.state.round(0)
    run_steps(ctx, rnd, "diagnose", "plan")
    mul = [ctx.items[k].difficulty for k in rnd.planned_items if ctx.items[k].skill == "mul_1d"]
    assert len(mul) == rnd.plan["items_per_skill"]["mul_1d"] and set(mul) <= {1, 2}


def test_it_does_not_stretch_the_random_control_or_a_skill_at_its_highest_level():
    course = mini_course(train=16)
    ctx = context(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        plan="random",
        plan_budget=12,
        stretch_share=0.5,
    )  # nor the default window
    rnd = ctx.state.round(0)
    run_steps(ctx, rnd, "diagnose", "plan")
    assert rnd.plan["stretch_per_skill"] == {}
    for skill, count in rnd.plan["items_per_skill"].items():
        level = rnd.plan["difficulty_per_skill"][skill]
        assert [ctx.items[k].difficulty for k in rnd.planned_items if ctx.items[k].skill == skill] == [
            level
        ] * count

    # mul_1d with one level only: nothing above it to stretch to.
    flat = Course(
        key=course.key,
        name=course.name,
        skills=course.skills,
        exercises=tuple(replace(e, difficulty=1) if e.skill == "mul_1d" else e for e in course.exercises),
    )
    ctx = context(
        flat,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        plan_budget=12,
        levels="stretch",
        stretch_share=0.5,
    )
    rnd = ctx.state.round(0)
    run_steps(ctx, rnd, "diagnose", "plan")
    assert rnd.plan["items_per_skill"]["mul_1d"] > 0 and "mul_1d" not in rnd.plan["stretch_per_skill"]
    assert rnd.plan["stretch_per_skill"]["add_1d"] > 0

"""The teaching benchmark's own logic: the budget rule, the arms' orders and sources, the metrics, the
target checks, the time estimate and the scripted teacher.

Plain Python (runs with ``-p no:django``): no model is loaded; the scripted teacher is checked through
the real teaching loop with a scripted student, so a change in the loop's prompts or gates that the
teacher no longer answers shows up here, not an hour into a benchmark run.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.scripted_teacher import ScriptedTeacher, check_brackets
from bench.teaching import (
    ARMS,
    Bench,
    beats,
    defaults_targets,
    estimate_minutes,
    exam_metrics,
    fill_to_budget,
    interleave_by_skill,
    keep_beyond_noise,
    keep_change,
    keep_replay_arms,
    keep_share_of,
    main_targets,
    mean_spread,
    parse_args,
    report,
    round_rows,
    untargeted_sources,
)
from tests.tutor.core.runs.fakes import ScriptedLLM, student_reply
from tutor.core.courses.course import Course, Exercise, Skill
from tutor.core.courses.expert import PACK_EXPERTS
from tutor.core.courses.packs import arithmetic_pack, load_pack, solve, verify
from tutor.core.courses.phrasings import read
from tutor.core.runs import RunConfig, RunState, run_teaching
from tutor.core.runs.state import Answer
from tutor.core.runs.steps import _expert_item, replay_count

RECORDS = [{"i": i} for i in range(4)]


@dataclass(frozen=True, order=True)
class Item:
    key: str
    skill: str
    held_out: bool = False


def test_it_fills_the_budget_in_order_to_within_half_a_record():
    taken, total = fill_to_budget(RECORDS, [10, 20, 30, 40], 65)
    assert taken == [0, 1, 2] and total == 60  # 100 would overshoot by 35, more than stopping 5 short

    taken, total = fill_to_budget(RECORDS, [10, 20, 30, 40], 85)
    assert taken == [0, 1, 2, 3] and total == 100  # 15 over is closer than 25 short


def test_it_cycles_a_short_pool_and_takes_nothing_for_no_budget():
    taken, total = fill_to_budget(RECORDS[:2], [10, 10], 45)
    assert taken == [0, 1, 0, 1] and total == 40

    assert fill_to_budget(RECORDS, [10, 20, 30, 40], 0) == ([], 0)
    assert fill_to_budget([], [], 100) == ([], 0)
    with pytest.raises(ValueError):
        fill_to_budget(RECORDS, [1], 10)


def test_it_gives_mean_and_sample_spread():
    assert mean_spread([0.2, 0.4]) == pytest.approx((0.3, 0.1414), abs=1e-4)
    assert mean_spread([0.5]) == (0.5, 0.0)


def _items(per_skill: dict[str, int]) -> list[Item]:
    return [Item(f"{skill}-{i}", skill) for skill, n in per_skill.items() for i in range(n)]


def test_it_orders_items_uniformly_over_skills_seeded():
    items = _items({"a": 5, "b": 5, "c": 3})
    order = interleave_by_skill(items, 0)
    assert sorted(order) == sorted(items)  # a permutation
    for n in (3, 6, 9):  # every prefix of whole turns holds each skill equally
        assert set(Counter(e.skill for e in order[:n]).values()) == {n // 3}
    assert order == interleave_by_skill(items, 0)
    assert order != interleave_by_skill(items, 1)


def test_it_chooses_untargeted_sources_at_random_without_the_student():
    items = _items({"a": 20, "b": 20, "c": 20, "d": 20})
    sources = untargeted_sources(items, 12, seed=3)
    assert len(sources) == len(set(sources)) == 12
    assert Counter(e.skill for e in sources) == {"a": 3, "b": 3, "c": 3, "d": 3}
    assert sources != untargeted_sources(items, 12, seed=4)
    assert sources == untargeted_sources(items, 12, seed=3)
    assert len(untargeted_sources(items, 500, seed=3)) == 80  # never an item twice
    assert untargeted_sources(items, 0, seed=3) == []


def test_it_measures_the_loops_keep_share_over_every_try():
    tries = [{"records": 100, "keep_records": 20}, {"records": 150, "keep_records": 55}]
    assert keep_share_of(tries) == pytest.approx(0.3)
    assert keep_share_of([]) == 0.0


def test_it_splits_the_exam_into_held_out_and_trained_phrasings_and_the_keep_set():
    items = [
        Item("t1", "add", False),
        Item("t2", "add", True),
        Item("t3", "add", True),
        Item("t4", "sub", False),
        Item("t5", "sub", True),
        Item("k1", "half", False),
        Item("k2", "half", True),
    ]
    correct = {"t1": True, "t2": True, "t3": False, "t4": False, "t5": False, "k1": True, "k2": False}
    m = exam_metrics(items, correct, taught={"add", "sub"}, keep={"half"})
    assert m["held_out"] == pytest.approx(1 / 3)  # t2 of t2, t3, t5: keep items never count here
    assert m["trained_phrasing"] == pytest.approx(1 / 2)
    assert m["per_skill_held_out"] == {"add": 0.5, "sub": 0.0}
    assert m["per_skill_trained_phrasing"] == {"add": 1.0, "sub": 0.0}
    assert m["keep"] == {"half": 0.5} and m["keep_n"] == {"half": 2}  # both phrasings


def test_it_measures_the_keep_change_and_drops_beyond_noise():
    change, worst = keep_change({"half": 0.4, "compare": 0.9}, {"half": 0.5, "compare": 0.8})
    assert change == pytest.approx({"half": -0.1, "compare": 0.1}) and worst == pytest.approx(-0.1)
    assert keep_change({}, {}) == ({}, 0.0)

    dropped, upper = keep_beyond_noise(0.6, [0.3, 0.3, 0.3], 40)  # 36 of 120: the bound is ~0.39
    assert dropped and upper < 0.6
    dropped, upper = keep_beyond_noise(0.5, [0.45, 0.45, 0.45], 40)  # within noise
    assert not dropped and upper > 0.5
    assert not keep_beyond_noise(0.5, [], 40)[0]


def test_it_checks_the_issues_targets():
    gap, spread, met = beats([0.50, 0.55, 0.60], [0.30, 0.35, 0.40])
    assert gap == pytest.approx(0.2) and spread == pytest.approx(0.05) and met
    assert not beats([0.50, 0.30, 0.70], [0.35, 0.40, 0.45])[2]  # ahead, but inside the spread
    assert not beats([0.3], [0.3])[2]

    rows = main_targets({"d_loop": [0.6, 0.6], "c_worked": [0.4, 0.4], "c_untargeted": [0.6, 0.7]}, ["half"])
    assert [met for _, _, met in rows] == [True, False, False]
    assert "half dropped" in rows[2][1]

    rows = defaults_targets(gain=0.31, worst_keep=-0.05, wall_s=14 * 60)
    assert all(met for _, _, met in rows)
    rows = defaults_targets(gain=0.29, worst_keep=-0.075, wall_s=16 * 60)
    assert not any(met for _, _, met in rows)


def test_its_estimate_is_within_the_planned_hours_and_the_smoke_run_within_minutes():
    full = estimate_minutes(parse_args([]))
    assert 100 <= full["total"] <= 200, full
    assert full["total"] == pytest.approx(
        sum(v for k, v in full.items() if k not in ("total", "budget_tokens"))
    )
    quick = estimate_minutes(parse_args(["--quick"]))
    assert quick["total"] < 20
    fewer = estimate_minutes(parse_args(["--arms", "a_base,d_loop"]))
    assert fewer["baselines"] == 0 and fewer["e_defaults"] == 0


def test_its_options_default_to_the_full_run_and_keep_the_required_arms():
    args = parse_args([])
    assert args.arms == list(ARMS) and args.seeds == 3 and args.out is not None
    args = parse_args(["--arms", "c_worked", "--quick"])
    assert args.arms == ["a_base", "c_worked", "d_loop"] and args.out is None and args.seeds == 1
    with pytest.raises(SystemExit):
        parse_args(["--arms", "e_loop_data"])


def _course():
    pack = load_pack("arithmetic", per_skill_per_split={"train": 6, "probe": 4, "exam": 3})
    skills = (
        Skill("add_2d", "Add two-digit numbers"),
        Skill("sub_2d", "Subtract two-digit numbers"),
        Skill("half", "Half of a number", keep=True),
    )
    return Course(
        key="mini",
        name="mini",
        skills=skills,
        exercises=tuple(e for e in pack.exercises if e.skill in {s.key for s in skills}),
        expert="arithmetic",
    )


def _trained(question: str, adapter: str | None) -> bool:
    # The first round's adapter answers the held-out phrasings, never the training ones (so the second
    # round still has mistakes to explain and generate from); the second round's answer nothing right.
    reading = read(question)
    return (adapter or "").startswith("round0") and reading is not None and reading.phrasing.held_out


def test_a_later_seed_replays_the_first_seeds_keep_pool_with_the_expert_items_it_answers(tmp_path):
    # Seed 1 once stopped with a KeyError: it got seed 0's keep pool, whose expert-written keep items
    # ("keep-half-<n>") it did not have.
    course = _course()

    def knows(question, adapter):  # the base knows the keep skill (half), nothing taught
        reading = read(question)
        return reading is not None and reading.phrasing.op == "half"

    bench = Bench(
        args=SimpleNamespace(),
        student=ScriptedLLM("student", student_reply(knows)),
        model_dir=Path("."),
        work=tmp_path,
    )
    trained: list[list[dict]] = []

    def train(records, out, settings, *, parent=None, lr_scale=1.0):
        trained.append(records)
        keep = sum(r["meta"]["source"] == "keep" for r in records)
        return {
            "adapter": str(out), "train_s": 0.0, "records": len(records), "keep_records": keep, "tokens": 10,
            "answer_tokens": 5, "engine_tokens": 10, "steps": 1, "final_loss": 0.1,
        }  # fmt: skip

    bench.train = train

    def config(seed):
        return RunConfig(
            rounds=1, plan_budget=4, explain_budget=2, generate_budget=2, generate_k=3, teacher_generate_k=3,
            seed=seed, acceptance="always",
        )  # fmt: skip

    _, first = bench.run_loop(course, ScriptedTeacher(course, seed=0), config(0), "loop-s0", {})
    assert [k for k in first.keep_pool if k.startswith("keep-")]  # the expert's keep items were answered
    _, second = bench.run_loop(
        course, ScriptedTeacher(course, seed=1), config(1), "loop-s1", {}, keep_from=first
    )
    assert second.keep_pool == first.keep_pool and second.keep_items == first.keep_items
    replayed = {r["meta"]["item"] for r in trained[-1] if r["meta"]["source"] == "keep"}
    assert replayed and replayed <= set(first.keep_pool)


def test_its_explanations_pass_the_checks_and_its_new_items_are_verified_and_new(tmp_path):
    course = _course()
    teacher = ScriptedTeacher(course, seed=0)
    student = ScriptedLLM("student", student_reply(_trained))  # wrong without an adapter or an explanation
    config = RunConfig(
        rounds=2, plan_budget=4, explain_budget=4, generate_budget=2, generate_k=3, teacher_generate_k=3
    )
    trained = []

    def train_fn(records, index, parent, *, attempt=0, lr_scale=1.0):
        trained.append((index, attempt, len(records)))
        return f"/adapters/round{index}-{attempt}"

    state = run_teaching(course, teacher, student, config, tmp_path / "state.json", train_fn=train_fn)

    explanations = [x for r in state.rounds for x in r.explanations]
    assert explanations and all(x.passed_gate and x.source == "model" for x in explanations)
    # Tailored to the student's actual answer, and the part that is trained on is the gold worked solution.
    assert all("999999" in x.text.split("\nSolution:")[0] for x in explanations)
    by_key = {e.key: e for e in course.exercises}
    assert all(x.text.endswith(by_key[x.item].solution) for x in explanations)

    generated = [g for r in state.rounds for g in r.generated]
    assert all(g.kept and g.source == "model" and g.verified_by == "expert" for g in generated)
    assert len(generated) == 2 * 2 * 3  # the teacher wrote every item: the expert filled in none
    prompts = [g.prompt for g in generated]
    assert len(set(prompts)) == len(prompts)  # the second round asks again and gets new items
    assert not set(prompts) & {e.prompt for e in course.exercises}
    assert not {g.phrasing for g in generated} & course.held_out_phrasings
    assert all(
        g.skill == by_key[g.source_item].skill and g.difficulty == by_key[g.source_item].difficulty
        for g in generated
    )
    assert state.teacher_exam and all(a.correct for a in state.teacher_exam.values())

    rows = round_rows(state)
    assert [r["round"] for r in rows] == [0, 1]
    assert (
        rows[0]["explained_model"] == len(state.rounds[0].explanations) and rows[0]["explained_expert"] == 0
    )
    assert rows[0]["generated_model"] == 6 and rows[0]["generated_expert"] == 0 and rows[0]["sources"] == 2
    # The default schedule continues round 0's adapter: round 1 replays a share of round 0's records.
    assert rows[0]["records_carried"] == 0 and 0 < rows[1]["records_carried"] < rows[0]["records_new"]
    # Round 1's adapters are no better than the base: both tries are rejected, the round rolled back.
    assert [[t["accepted"] for t in r["tries"]] for r in rows] == [[True], [False, False]]
    assert rows[1]["rolled_back"] and "no gain over the base" in rows[1]["tries"][1]["reason"]
    assert rows[1]["tries"][1]["lr_scale"] == 0.5 and [t[:2] for t in trained] == [(0, 0), (1, 0), (1, 1)]
    assert rows[1]["tries"][0]["records"] == trained[1][2]
    assert rows[1]["exam_held_out"] == 1.0 and rows[1]["exam_trained_phrasing"] == 0.0


def _keep_state(course):
    keep_items = [e for e in course.split("train") if e.skill in {s.key for s in course.keep_skills}]
    return RunState(
        config=RunConfig(generate_k=2, teacher_generate_k=2),
        course=course.key,
        teacher="scripted-teacher",
        student="student",
        keep_pool={e.key: Answer(e.key, f"Answer: {e.answer}", e.answer, True) for e in keep_items},
    )


def test_its_untargeted_arm_makes_verified_items_from_random_sources_and_the_loops_keep_share(tmp_path):
    course = arithmetic_pack(0, per_skill_per_split={"train": 8, "probe": 2, "exam": 2})
    taught = {s.key for s in course.taught_skills}
    state = _keep_state(course)
    bench = Bench(
        args=SimpleNamespace(),
        student=ScriptedLLM("student", student_reply()),
        model_dir=Path("."),
        work=tmp_path,
    )
    loop = {"sources": 8, "tries": [{"records": 100, "keep_records": 25}]}

    records, made = bench.untargeted_pool(course, 5, loop, state)

    train = [e for e in course.split("train") if e.skill in taught]
    chosen = {e.key for e in untargeted_sources(train, 8, 5)}
    generated = [r for r in records if r["meta"]["source"] == "generated"]
    assert made["sources"] == 8 and made["generated"] == len(generated) == 16  # k = 2 from each source
    assert Counter(r["meta"]["source_item"] for r in generated) == dict.fromkeys(chosen, 2)
    assert made["keep"] == replay_count(16, len(state.keep_pool), 0.25) == 5 and made["keep_share"] == 0.25
    questions = [r["messages"][0]["content"].rsplit("\n", 1)[0] for r in generated]
    assert len(set(questions)) == 16 and not set(questions) & {e.prompt for e in course.exercises}
    assert all(read(q) is not None and not read(q).phrasing.held_out for q in questions)
    by_key = {e.key: e for e in course.exercises}
    for r in generated:  # verified: the expert agrees with the answer the record teaches
        reading = read(r["messages"][0]["content"].rsplit("\n", 1)[0])
        source = by_key[r["meta"]["source_item"]]
        assert reading.phrasing.op == read(source.prompt).phrasing.op
        assert r["messages"][-1]["content"].endswith(
            f"Answer: {solve(r['messages'][0]['content'].rsplit(chr(10), 1)[0])}"
        )
    assert len(records) == 16 + 5


def test_its_untargeted_arm_replays_the_experts_keep_items_too(tmp_path):
    # The loop's keep pool holds the expert's extra keep items (keys "keep-<skill>-<n>"), not only
    # course items; the untargeted arm replays from the same pool (it once failed on such a key).
    course = arithmetic_pack(0, per_skill_per_split={"train": 8, "probe": 2, "exam": 2})
    expert = PACK_EXPERTS["arithmetic"]
    source = next(e for e in course.split("train") if e.skill == "half")
    written = expert.new_items(source, 3, random.Random(0), avoid=frozenset())
    items = [_expert_item(expert, e, f"keep-half-{i}", source.key, 0) for i, e in enumerate(written)]
    state = RunState(
        config=RunConfig(generate_k=2, teacher_generate_k=2),
        course=course.key,
        teacher="scripted-teacher",
        student="student",
        keep_pool={g.key: Answer(g.key, f"Answer: {g.answer}", g.answer, True) for g in items},
        keep_items=items,
    )
    bench = Bench(
        args=SimpleNamespace(),
        student=ScriptedLLM("student", student_reply()),
        model_dir=Path("."),
        work=tmp_path,
    )

    records, made = bench.untargeted_pool(
        course, 5, {"sources": 8, "tries": [{"records": 4, "keep_records": 1}]}, state
    )

    keep = [r for r in records if r["meta"]["source"] == "keep"]
    assert made["keep"] == len(keep) > 0
    assert {r["meta"]["item"] for r in keep} <= {g.key for g in items}
    assert all(r["meta"]["skill"] == "half" for r in keep)


def test_its_keep_replay_ablation_adds_the_loops_share_to_worked_solutions_or_takes_it_from_c_prime(tmp_path):
    course = arithmetic_pack(0, per_skill_per_split={"train": 8, "probe": 2, "exam": 2})
    state = _keep_state(course)
    bench = Bench(
        args=SimpleNamespace(),
        student=ScriptedLLM("student", student_reply()),
        model_dir=Path("."),
        work=tmp_path,
    )

    plain = bench.baseline_pool(course, "c_worked", 3)
    replayed = bench.baseline_pool(course, "c_worked", 3, (0.25, state))

    keep = [r for r in replayed if r["meta"]["source"] == "keep"]
    assert len(keep) == replay_count(len(plain), len(state.keep_pool), 0.25) > 0
    assert {r["meta"]["item"] for r in keep} <= set(state.keep_pool)
    assert [r for r in replayed if r["meta"]["source"] != "keep"] == plain  # every item, same order
    assert replayed != plain[: len(plain)] + keep  # spread through the order, not appended
    records, made = bench.untargeted_pool(
        course, 5, {"sources": 8, "tries": [{"records": 100, "keep_records": 25}]}, state, with_keep=False
    )
    assert made["keep"] == 0 and not [r for r in records if r["meta"]["source"] == "keep"]
    assert keep_replay_arms("c_untargeted") == {"c_untargeted"} and keep_replay_arms("none") == set()
    assert keep_replay_arms("c_worked,c_untargeted") == {"c_worked", "c_untargeted"}
    with pytest.raises(SystemExit, match="d_loop"):
        keep_replay_arms("d_loop")
    assert parse_args([]).keep_replay == "c_untargeted"  # the default compares as before


def test_it_checks_writes_and_explains_bracket_sequences():
    assert check_brackets("( [ ] ) { }")[0]
    assert not check_brackets("( ] ")[0] and not check_brackets("( (")[0] and not check_brackets(")")[0]

    prompt = "Determine whether the given sequence of parentheses is properly matched.\nSequence: ( [ ) ]"
    item = Exercise(
        key="p-1",
        skill="parens",
        prompt=prompt,
        answer="Invalid",
        answer_type="choice",
        options=("Valid", "Invalid"),
    )
    course = Course(key="bb", name="bb", skills=(Skill("parens", "Parentheses"),), exercises=(item,))
    teacher = ScriptedTeacher(course)
    [generation] = teacher.generate(
        [
            [
                {
                    "role": "user",
                    "content": (
                        "Here is an exercise and its worked solution.\nQuestion: A) Valid\nB) Invalid\n"
                        "Solution: x\n\nWrite 3 new exercises of the same kind"
                    ),
                }
            ]
        ]
    )
    assert generation.text.startswith("I cannot")  # not a question it knows: it writes nothing

    from tutor.core.runs import prompts

    text = teacher.generate([prompts.generation_prompt(item, 3)])[0].text
    drafts = prompts.parse_generated(text)
    assert len(drafts) == 3 and all(d.options == ("Valid", "Invalid") for d in drafts)
    for draft in drafts:
        sequence = draft.question.split("Sequence: ", 1)[1]
        assert draft.answer == ("Valid" if check_brackets(sequence)[0] else "Invalid")
        exercise = Exercise(
            key="g",
            skill="parens",
            prompt=draft.question,
            answer=draft.answer,
            answer_type="choice",
            options=draft.options,
        )
        assert verify(exercise) is None  # no code solver: the loop asks the teacher a second time
        assert teacher.generate([prompts.student_prompt(exercise)])[0].text == f"Answer: {draft.answer}"


def _run(metrics, **extra):
    return {
        "metrics": metrics,
        "tokens": 1000,
        "answer_tokens": 400,
        "train_s": 60.0,
        "wall_s": 120.0,
        **extra,
    }


def test_it_renders_the_report_with_every_arm_and_the_targets():
    course = arithmetic_pack(0, per_skill_per_split={"train": 2, "probe": 2, "exam": 4})
    taught, keep = {s.key for s in course.taught_skills}, {s.key for s in course.keep_skills}
    exam = course.split("exam")
    base = exam_metrics(exam, {e.key: e.skill in keep for e in exam}, taught, keep)
    better = exam_metrics(exam, {e.key: e.held_out or e.skill in keep for e in exam}, taught, keep)
    worse = exam_metrics(exam, {e.key: e.skill == "half" for e in exam}, taught, keep)
    loop_round = {
        "round": 0,
        "plan": {"add_1d": 4},
        "explained_model": 3,
        "explained_expert": 1,
        "explain_pass_rate": 0.75,
        "helped": 2,
        "generated_model": 6,
        "generated_expert": 0,
        "generated_written": 6,
        "sources": 3,
        "records_new": 9,
        "records_carried": 0,
        "records_keep": 2,
        "tries": [
            {
                "attempt": 0,
                "accepted": True,
                "reason": "held-out probe 0.25 -> 0.50",
                "records": 11,
                "held_out_before": 0.25,
                "held_out_after": 0.5,
                "lr_scale": 1.0,
            }
        ],
        "rolled_back": False,
        "exam_held_out": 1.0,
        "exam_trained_phrasing": 0.0,
    }
    loop = _run(better, rounds=[loop_round], round_wall_s={0: 90.0}, sources=3, generated=6)
    results = {
        "seeds": [0],
        "arms": {
            "a_base": {0: _run(base, tokens=0, answer_tokens=0)},
            "b_answers": {0: _run(base)},
            "c_worked": {0: _run(base)},
            "c_untargeted": {
                0: _run(worse, made={"sources": 3, "generated": 6, "keep": 2, "keep_share": 0.18}, passes=1.5)
            },
            "d_loop": {0: loop},
        },
        "defaults": [
            {**loop, "base_metrics": base, "seed": 0, "student_tokens": 48, "wall_s": 600.0},
        ],
    }
    args = parse_args(["--quick"])
    text = report(args, course, results, "torch x", estimate_minutes(args))

    for label in ("(a) base", "(b) SFT", "(c) SFT", "(c') untargeted", "(d) loop", "(e) loop as shipped"):
        assert label in text
    assert "| 100.0 ± 0.0 (100.0–100.0) | 0.0 ± 0.0 (0.0–0.0) |" in text  # (d): held-out, trained
    assert "**dropped**" in text  # (c') lost div_exact and compare
    assert (
        "| (d) beats (c) on the held-out-phrasing exam by more than the seed spread | +100.0 points" in text
    )
    assert (
        "| (e) +30 points on the held-out-phrasing exam over its base (seed 0) | +100.0 points | yes |"
        in text
    )
    assert "| (e) wall time under 15 min on 2 cores (seed 0) | 10.0 min | yes |" in text
    assert "1 ✓ 11 rec, lr×1: held-out probe 0.25 -> 0.50" in text
    assert "oracle" in text and "smoke run" in text


def test_the_loop_arm_runs_with_the_rules_it_is_given_and_refuses_unknown_ones(capsys):
    from bench.teaching import run_config

    args = parse_args(["--arms", "d_loop", "--loop-set", "keep_share=0.08", "--loop-set", "round_tries=1"])
    config = run_config(args, 3)
    assert (config.keep_share, config.round_tries, config.seed) == (0.08, 1, 3)
    assert run_config(parse_args(["--arms", "d_loop"]), 0).keep_share == 0.25  # the loop's default
    for bad in ("keep_shares=0.1", "keep_share=1.5"):
        with pytest.raises(SystemExit):
            parse_args(["--arms", "d_loop", "--loop-set", bad])
        assert "--loop-set" in capsys.readouterr().err

"""The rules that make a run teach the skill and do no harm: the expert, the phrasing split, the keep
set, the acceptance check with its retries and rollback, and the from-the-base schedule."""

from __future__ import annotations

import json

import pytest

from tests.tutor.core.runs.fakes import ScriptedLLM, add_items, known, student_reply, teacher_reply
from tutor.core.courses.course import Course, Exercise, Skill
from tutor.core.courses.packs import load_pack
from tutor.core.courses.phrasings import BY_KEY, read
from tutor.core.runs import RunConfig, run_teaching

SMALL = {
    "rounds": 1,
    "plan_budget": 4,
    "explain_budget": 3,
    "generate_budget": 2,
    "generate_k": 3,
    "siblings": 1,
}


def keep_course() -> Course:
    """add_1d -> add_2d taught, compare kept; the arithmetic expert; 8 probe and exam items per skill."""
    pack = load_pack("arithmetic", per_skill_per_split={"train": 8, "probe": 8, "exam": 8})
    skills = tuple(s for s in pack.skills if s.key in ("add_1d", "add_2d", "compare"))
    keys = {s.key for s in skills}
    return Course(
        key="keep",
        name="Keep",
        skills=skills,
        exercises=tuple(e for e in pack.exercises if e.skill in keys),
        expert="arithmetic",
    )


class Trainer:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, records, index, parent, *, attempt=0, lr_scale=1.0):
        self.calls.append(
            {"round": index, "records": records, "parent": parent, "attempt": attempt, "lr_scale": lr_scale}
        )
        return f"/adapters/r{index}-t{attempt}"


def student(learns_with=lambda adapter: False, forgets_with=lambda adapter: False):
    """Knows compare (the keep skill) and, with an adapter that ``learns_with``, every addition; an
    adapter that ``forgets_with`` loses compare."""

    def knows(question: str, adapter: str | None) -> bool:
        reading = read(question)
        if reading is not None and reading.phrasing.op == "max":
            return not (adapter and forgets_with(adapter))
        return bool(adapter) and learns_with(adapter)

    return student_reply(knows)


def answers_recorded(asked: list[str], with_adapter):
    """A student that learns with any adapter, noting in ``asked`` each question it answers plainly
    with an adapter ``with_adapter`` accepts."""
    reply = student(learns_with=lambda a: True)

    def recording(kind, question, conversation, adapter):
        if with_adapter(adapter) and kind == "answer":
            asked.append(question)
        return reply(kind, question, conversation, adapter)

    return recording


def wrong_teacher():
    """A teacher whose explanations and items are always wrong: the bundled 135M model's level."""
    return ScriptedLLM(
        "weak",
        teacher_reply(wrong_on=lambda q: True, generate=lambda q: "Question: 2+2?\nSolution: no\nAnswer: 5"),
    )


def test_a_weak_teacher_still_teaches_with_the_expert_and_says_who_wrote_what(tmp_path):
    trainer = Trainer()
    state = run_teaching(
        keep_course(),
        wrong_teacher(),
        ScriptedLLM("student", student(learns_with=lambda a: True)),
        RunConfig(**SMALL),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    rnd = state.rounds[0]
    assert rnd.explanations and all(x.source == "expert" and x.passed_gate for x in rnd.explanations)
    for x in rnd.explanations:
        assert x.candidates == 2 and x.candidates_passed == 0  # two candidates, both failed
        assert "999999" in x.model_text and x.text.startswith("Mistake:") and "Answer:" in x.text
    assert rnd.generated and all(g.kept == (g.source == "expert") for g in rnd.generated)
    assert sum(g.kept for g in rnd.generated) == 2 * 3  # every source completed to generate_k
    assert trainer.calls and state.adapter_name == "round0"


@pytest.mark.parametrize("floor", [0.05, 0.0])
def test_a_teacher_that_fails_every_check_is_not_asked_again_from_the_second_round(tmp_path, floor):
    teacher = wrong_teacher()
    state = run_teaching(
        keep_course(),
        teacher,
        ScriptedLLM("student", student()),
        RunConfig(
            **{**SMALL, "rounds": 2, "plan_budget": 8, "explain_budget": 4, "generate_budget": 8},
            acceptance="always",
            teacher_min_pass=floor,
        ),
        tmp_path / "s.json",
        train_fn=Trainer(),
    )
    first, second = state.rounds
    tried = sum(x.candidates for x in first.explanations)
    drafts = sum(g.source == "model" for g in first.generated)
    assert tried >= 8 and drafts >= 8  # enough of both to judge the teacher's pass rate
    asked_in_first = tried // 2  # two candidates per explanation, in one greedy and one sampled batch
    if floor:
        # Round 2: the expert writes every explanation and item; the round says why, with the figures.
        assert len(teacher.seen("explain")) == asked_in_first * 2
        assert len(teacher.seen("generate")) == drafts
        assert second.explanations and all(
            x.source == "expert" and x.passed_gate and x.candidates == 0 and x.model_text == ""
            for x in second.explanations
        )
        assert second.generated and all(g.source == "expert" for g in second.generated)
        assert any(
            f"not asked to explain this round: its explanations passed the checks 0 of {tried}" in w
            for w in second.warnings
        )
        assert any(
            f"not asked to write new items this round: its new items passed the checks 0 of {drafts}" in w
            for w in second.warnings
        )
    else:  # 0: the teacher is asked every round
        assert len(teacher.seen("explain")) > asked_in_first * 2
        assert len(teacher.seen("generate")) > drafts
        assert all(x.candidates == 2 for x in second.explanations)
        assert not any("not asked" in w for w in second.warnings)
    assert not any("not asked" in w for w in first.warnings)


def test_no_held_out_phrasing_or_exam_item_ever_reaches_training_data(tmp_path):
    course = keep_course()
    held_out = course.held_out_phrasings
    trainer = Trainer()
    state = run_teaching(
        course,
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student(learns_with=lambda a: True)),
        RunConfig(**{**SMALL, "rounds": 2}),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    records = [r for call in trainer.calls for r in call["records"]]
    assert records
    held_prompts = {e.prompt for e in course.exercises if e.held_out or e.split == "exam"}
    for record in records:
        question = record["messages"][0]["content"].split("\n")[0]
        reading = read(question)
        assert question not in held_prompts
        assert reading is None or reading.phrasing.key not in held_out, question
    assert not any(
        BY_KEY[g.phrasing].held_out for r in state.rounds for g in r.generated if g.kept and g.phrasing
    )


def test_a_teacher_item_in_a_held_out_phrasing_is_dropped(tmp_path):
    def held_out_items(question):
        return "Question: What number is 5 more than 71?\nSolution: 71 + 5 = 76.\nAnswer: 76"

    state = run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=held_out_items)),
        ScriptedLLM("student", student()),
        RunConfig(**SMALL, acceptance="always"),
        tmp_path / "s.json",
        train_fn=Trainer(),
    )
    drafts = [g for g in state.rounds[0].generated if g.source == "model"]
    assert drafts and all(
        not g.kept and g.reason == "asks in a held-out phrasing (add.increased)" for g in drafts
    )


def test_it_replays_the_base_students_own_right_answers_on_the_keep_set(tmp_path):
    trainer = Trainer()
    state = run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student(learns_with=lambda a: True)),
        RunConfig(**SMALL, keep_share=0.25),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    records = trainer.calls[0]["records"]
    keep = [r for r in records if r["meta"]["source"] == "keep"]
    assert keep and len(keep) == round((len(records) - len(keep)) * 0.25 / 0.75)
    for r in keep:  # the student's own words, right, on an item it already answered right
        assert r["meta"]["skill"] == "compare"
        assert (
            r["messages"][-1]["content"]
            == f"Let me think.\nAnswer: {known(r['messages'][0]['content'].split(chr(10))[0])}"
        )
    assert state.rounds[0].keep_records == len(keep)


def test_it_never_replays_a_right_answer_that_says_something_false(tmp_path):
    """A weak base answers "which is larger" right where the larger number comes first; where it comes
    second it writes "a is a larger number than b", right by its last number and false as a sentence.
    Replaying that would teach a coin flip; only the true sentences are replayed."""

    def reply(kind, question, conversation, adapter):
        reading = read(question)
        if reading is None or reading.phrasing.op != "max":
            return "Answer: 999999"
        a, b = reading.a, reading.b
        return f"The larger number is {a}." if a > b else f"{a} is a larger number than {b}."

    trainer = Trainer()
    state = run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", reply),
        RunConfig(**SMALL, keep_share=0.5),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    assert state.keep_pool, "the true sentences are kept"
    replayed = [
        r["messages"][-1]["content"] for r in trainer.calls[0]["records"] if r["meta"]["source"] == "keep"
    ]
    assert replayed and all("a larger number than" not in text for text in replayed)
    assert all("a larger number than" not in a.text for a in state.keep_pool.values())


def test_it_retries_a_try_that_loses_a_keep_skill_then_accepts_the_next(tmp_path):
    trainer = Trainer()
    state = run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student(learns_with=lambda a: True, forgets_with=lambda a: a == "round0")),
        RunConfig(**SMALL),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    rnd = state.rounds[0]
    assert [t["accepted"] for t in rnd.tries] == [False, True]
    assert "keep skill dropped beyond noise (compare 1.00 -> 0.00)" in rnd.tries[0]["reason"]
    assert [(c["attempt"], c["lr_scale"]) for c in trainer.calls] == [(0, 1.0), (1, 0.5)]
    keep = [sum(r["meta"]["source"] == "keep" for r in c["records"]) for c in trainer.calls]
    assert keep[1] >= keep[0]  # the retry replays more of the keep set
    assert state.adapter_name == "round0-try1" and "(try 2)" in rnd.train["note"]
    # The next round's diagnose reuses the accepted try's probe answers instead of asking again.
    assert rnd.probe_after and set(rnd.probe_after) == {e.key for e in keep_course().split("probe")}


def test_a_round_that_trades_a_learned_skill_for_a_new_one_is_retried(tmp_path):
    """Round 0 teaches one-digit sums. Round 1's first try learns two-digit sums and forgets one-digit
    ones: the held-out probe nets to level (4 items lost, 4 won), and only the learned-skill rule sees
    the loss. The retry keeps both and is accepted."""

    def knows(question: str, adapter: str | None) -> bool:
        reading = read(question)
        if reading is None or reading.phrasing.op == "max":
            return reading is not None  # compare, the keep skill: always known
        one_digit = max(reading.a, reading.b) < 10
        if adapter == "round0":
            return one_digit
        if adapter == "round1":
            return not one_digit
        return adapter == "round1-try1"

    trainer = Trainer()
    state = run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student_reply(knows)),
        RunConfig(**{**SMALL, "rounds": 2}),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    first, retry = state.rounds[1].tries
    assert not first["accepted"]
    assert "learned skill fell behind the adapter before beyond noise (add_1d 1.00 -> 0.00" in first["reason"]
    assert first["learned"]["add_1d"] == {"before": 1.0, "now": 0.0, "n": 8}
    assert "add_2d" not in first["learned"]  # not learned before the round: nothing to lose
    assert retry["accepted"] and retry["lr_scale"] == 0.5
    assert state.adapter_name == "round1-try1"
    # Round 0 had nothing learned to lose: the base is the adapter before it.
    assert state.rounds[0].tries[0]["learned"] == {}


def test_a_learned_skill_is_judged_on_all_its_probe_items_asked_of_the_adapter_before_once(tmp_path):
    """The diagnosis asks 4 probe items a skill; the learned-skill rule reads all 8 of add_1d's, and the
    adapter before the round answers the 4 it had not been asked once, not once per try."""
    asked: list[tuple[str, str | None]] = []
    course = keep_course()
    later = {e.prompt for e in course.split("probe") if e.skill == "add_1d"} - {
        e.prompt for e in course.exercises_for("add_1d", "probe")[:4]
    }

    def knows(question: str, adapter: str | None) -> bool:
        reading = read(question)
        if reading is None or reading.phrasing.op == "max":
            return reading is not None
        if question in later:
            asked.append((question, adapter))
        one_digit = max(reading.a, reading.b) < 10
        if adapter is None:
            return False
        if adapter == "round0":
            return one_digit
        # Round 1's first try forgets one-digit sums on the items the diagnosis does not ask only.
        return not (adapter == "round1" and question in later)

    state = run_teaching(
        course,
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student_reply(knows)),
        RunConfig(**{**SMALL, "rounds": 2}, probe_per_skill=4),
        tmp_path / "s.json",
        train_fn=Trainer(),
    )
    first = state.rounds[1].tries[0]
    assert first["learned"]["add_1d"] == {"before": 1.0, "now": 0.5, "n": 8}
    assert not first["accepted"] and "add_1d 1.00 -> 0.50" in first["reason"]
    by_round0 = [q for q, adapter in asked if adapter == "round0"]
    assert sorted(by_round0) == sorted(later)  # each once, for both tries of round 1


def test_a_round_that_continues_an_adapter_trains_at_the_continue_learning_rate(tmp_path):
    trainer = Trainer()
    run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student(learns_with=lambda a: False)),  # mistakes to teach in round 1 too
        RunConfig(**{**SMALL, "rounds": 2}, continue_lr=0.5, acceptance="always"),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    # round 0 from the base at the full rate; round 1 continues round 0's adapter at half of it
    assert [(c["round"], c["parent"], c["lr_scale"]) for c in trainer.calls] == [
        (0, None, 1.0),
        (1, "/adapters/r0-t0", 0.5),
    ]


def test_it_rolls_back_a_round_that_gains_nothing_on_held_out_phrasings(tmp_path):
    trainer = Trainer()
    state = run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student(learns_with=lambda a: False)),
        RunConfig(**SMALL, round_tries=2),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    rnd = state.rounds[0]
    assert len(trainer.calls) == 2 and not any(t["accepted"] for t in rnd.tries)
    assert state.adapter_name is None and state.adapter_path is None
    assert rnd.train["rolled_back"] and "no gain on held-out phrasings" in rnd.train["note"]
    assert rnd.exam["adapter"] is None  # the exam reports the base model the run kept


def test_it_never_decides_on_the_exam(tmp_path):
    """The acceptance check asks the student the probe only: exam answers come once, at re-examination."""
    asked: list[str] = []
    recording = answers_recorded(asked, lambda adapter: bool(adapter and adapter.startswith("round")))

    course = keep_course()
    run_teaching(
        course,
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", recording),
        RunConfig(**SMALL),
        tmp_path / "s.json",
        train_fn=Trainer(),
    )
    exam = {e.prompt for e in course.split("exam")}
    assert sum(q in exam for q in asked) == len(exam)  # each exam item once, after the decision


def test_the_re_examination_reuses_the_accepted_tries_probe_answers_for_forgetting(tmp_path):
    """The forgetting check reads probe items of untaught skills with the kept adapter; the acceptance
    check has just answered every probe item with it, so none is asked twice."""
    asked: list[str] = []
    recording = answers_recorded(asked, lambda adapter: adapter == "round0")

    course = keep_course()
    state = run_teaching(
        course,
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", recording),
        RunConfig(**SMALL),
        tmp_path / "s.json",
        train_fn=Trainer(),
    )
    rnd = state.rounds[0]
    assert rnd.tries[0]["accepted"] and rnd.exam["forgetting"]  # there was something to reuse
    probe = [e.prompt for e in course.split("probe")]
    assert all(asked.count(q) == 1 for q in probe)  # by the acceptance check, not again
    # The answers reused are the same ones: compare's probe items, right before and after.
    assert rnd.exam["forgetting"]["compare"] == {"before": 1.0, "after": 1.0}


def test_from_the_base_each_round_trains_every_verified_record_so_far(tmp_path):
    trainer = Trainer()
    run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student(learns_with=lambda a: True)),
        RunConfig(**{**SMALL, "rounds": 2}, keep_share=0.0, schedule="from_base"),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    first, second = (c for c in trainer.calls if c["attempt"] == 0)
    assert first["parent"] is None and second["parent"] is None
    earlier = {json.dumps(r["messages"]) for r in first["records"]}
    assert earlier <= {json.dumps(r["messages"]) for r in second["records"]}


def test_a_course_without_an_expert_says_what_it_cannot_verify_and_drops_nothing_silently(tmp_path):
    pack = load_pack("arithmetic", per_skill_per_split={"train": 6, "probe": 4, "exam": 4})
    bare = Course(
        key="bare",
        name="Bare",
        skills=(Skill("add_2d", "Add"),),
        exercises=tuple(
            Exercise(**{**e.__dict__, "solution": ""}) for e in pack.exercises if e.skill == "add_2d"
        ),
    )
    state = run_teaching(
        bare,
        wrong_teacher(),
        ScriptedLLM("student", student()),
        RunConfig(**{**SMALL, "rounds": 2}, acceptance="always"),
        tmp_path / "s.json",
        train_fn=Trainer(),
    )
    rnd = state.rounds[0]
    assert rnd.explanations and all(not x.passed_gate and x.source == "model" for x in rnd.explanations)
    assert all(x.gate_reason.startswith("final answer is wrong") for x in rnd.explanations)
    assert not any(g.source == "expert" for g in rnd.generated)
    if len(state.rounds) > 1:  # nothing could stand in, so the failing teacher is still asked
        assert all(x.source == "model" and x.candidates for x in state.rounds[1].explanations)


def test_it_asks_the_exam_after_the_last_round_only_unless_told(tmp_path):
    course = keep_course()
    exam = {e.prompt for e in course.split("exam")}

    def run(tag: str, **settings):
        asked: list[str] = []
        reply = student(learns_with=lambda a: True)

        def recording(kind, question, conversation, adapter):
            asked.append(question)
            return reply(kind, question, conversation, adapter)

        state = run_teaching(
            course,
            ScriptedLLM("teacher", teacher_reply(generate=add_items)),
            ScriptedLLM("student", recording),
            RunConfig(**{**SMALL, "rounds": 2}, **settings),
            tmp_path / f"{tag}.json",
            train_fn=Trainer(),
        )
        return state, sum(q in exam for q in asked)

    state, asked = run("last")
    assert state.rounds[0].exam["accuracy"] is None and state.rounds[1].exam["accuracy"] is not None
    assert asked == 2 * len(exam)  # the trained student once, the base model once
    state, asked = run("every", exam_every_round=True)
    assert all(r.exam["accuracy"] is not None for r in state.rounds) and asked == 3 * len(exam)


def test_the_expert_writes_more_keep_items_for_the_base_student_to_answer(tmp_path):
    trainer = Trainer()
    state = run_teaching(
        keep_course(),
        ScriptedLLM("teacher", teacher_reply(generate=add_items)),
        ScriptedLLM("student", student(learns_with=lambda a: True)),
        RunConfig(**SMALL, keep_share=0.5),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    extra = state.keep_items
    assert extra and all(g.skill == "compare" and g.source == "expert" for g in extra)
    assert all(not BY_KEY[g.phrasing].held_out for g in extra)
    course_prompts = {e.prompt for e in keep_course().exercises}
    assert not [g for g in extra if g.prompt in course_prompts]
    replayed = {r["meta"]["item"] for r in trainer.calls[0]["records"] if r["meta"]["source"] == "keep"}
    assert replayed & {g.key for g in extra}  # the extra items are in the replay


def test_a_run_seed_too_large_for_the_trainer_is_refused_up_front():
    with pytest.raises(ValueError, match=r"seed must be at most 4294967295"):
        RunConfig(seed=10**30)
    assert RunConfig(seed=2**32 - 1).seed == 2**32 - 1


@pytest.mark.parametrize("misreads", [True, False])
def test_a_misread_question_is_practised_in_its_own_wording_a_slip_in_others(tmp_path, misreads):
    def reply(kind, question, conversation, adapter):
        reading = read(question)
        if reading is None or reading.phrasing.op != "+":
            return "Answer: 0"
        b = reading.b + 1 if misreads else reading.b  # "47 + 39" for 47 + 38: a misreading
        return f"{reading.a} + {b}:\nOnes: a slip.\nAnswer: 1"

    state = run_teaching(
        keep_course(),
        wrong_teacher(),
        ScriptedLLM("student", reply),
        RunConfig(**{**SMALL, "generate_k": 4}),
        tmp_path / "s.json",
        train_fn=Trainer(),
    )
    rnd = state.rounds[0]
    items = {e.key: e for e in keep_course().exercises}
    sources = {g.source_item for g in rnd.generated if g.source == "expert"}
    assert len(sources) == 2
    for source in sources:
        made = [g for g in rnd.generated if g.source_item == source and g.source == "expert"]
        own = sum(g.phrasing == items[source].phrasing for g in made)
        assert len(made) == 4 and own == (2 if misreads else 0)
        assert all(not BY_KEY[g.phrasing].held_out for g in made)
    explained = [x for x in rnd.explanations if x.source == "expert"]
    assert explained and all(("reads the question as" in x.text) == misreads for x in explained)

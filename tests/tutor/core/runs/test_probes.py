"""The general probe for forgetting, multiple choice answered by likelihood, and a whole run on a
course imported from BIG-bench (../shared/data), with scripted models."""

from __future__ import annotations

import json
import re

import pytest

from tests.paths import BIGBENCH_DIR
from tests.tutor.core.runs.fakes import (
    LEGACY_RULES,
    ScriptedLLM,
    general_score,
    is_general,
    known,
    mini_course,
    student_reply,
    teacher_reply,
)
from training.core.llm.base import UnsupportedOperation
from tutor.core.courses.course import Course
from tutor.core.courses.formats import import_bigbench
from tutor.core.runs import STEPS, RunConfig, run_teaching
from tutor.core.runs.general_probe import GENERAL_PROBE
from tutor.core.runs.prompts import question_text
from tutor.core.runs.state import OLD_RUN_DEFAULTS
from tutor.core.runs.steps import forgetting_warning

BIGBENCH = BIGBENCH_DIR / "valid_parentheses.json"
CONFIG = RunConfig(
    **LEGACY_RULES, rounds=2, plan_budget=4, explain_budget=2, generate_budget=1, generate_k=2, siblings=1
)


def trainer(records, index, parent, **_):
    return f"/adapters/round{index}"


def test_the_general_probe_is_multiple_choice_with_the_gold_option_in_every_position():
    assert len(GENERAL_PROBE) >= 12 and len({e.prompt for e in GENERAL_PROBE}) == len(GENERAL_PROBE)
    assert {e.options.index(e.answer) for e in GENERAL_PROBE} == {0, 1, 2}
    assert all(e.answer_type == "choice" and e.split == "exam" for e in GENERAL_PROBE)


def test_it_warns_when_the_trained_student_forgets_what_the_course_does_not_teach(tmp_path):
    course = mini_course()
    # The base student knows the general questions; once trained (any adapter) it answers them wrongly.
    student = ScriptedLLM(
        "student", student_reply(), score=general_score(knows=lambda adapter: adapter is None)
    )
    teacher = ScriptedLLM("teacher", teacher_reply())
    config = RunConfig(
        **LEGACY_RULES, rounds=1, plan_budget=4, explain_budget=2, generate_budget=0, general_probe=12
    )
    state = run_teaching(course, teacher, student, config, tmp_path / "s.json", train_fn=trainer)

    general = state.rounds[0].exam["general"]
    assert general["items"] == 12 and general["base_accuracy"] == 1.0 and general["accuracy"] == 0.0
    assert any(
        w.startswith("possible forgetting: the general probe (12 questions") for w in state.rounds[0].warnings
    )
    assert set(state.base_general) == {e.key for e in GENERAL_PROBE[:12]}
    # Answered by likelihood, cloze style: the bare question, each option as the whole reply.
    assert {(q, r) for q, r, _ in student.scored} == {
        (e.prompt, o) for e in GENERAL_PROBE[:12] for o in e.options
    }
    # Asked of the student only, never of the teacher, and never part of any record.
    assert not [c for call in teacher.calls for c in call.conversations if is_general(_question(c))]
    records = json.dumps([r for rnd in state.rounds for r in rnd.sft_records + rnd.dpo_records])
    assert not [e for e in GENERAL_PROBE if e.prompt in records]


def test_it_stays_quiet_when_the_student_keeps_its_general_knowledge_and_can_be_turned_off(tmp_path):
    course = mini_course()
    student = ScriptedLLM("student", student_reply(), score=general_score())
    state = run_teaching(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        student,
        RunConfig(**LEGACY_RULES, rounds=1, plan_budget=4, explain_budget=2, generate_budget=0),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    assert state.rounds[0].exam["general"]["accuracy"] == 1.0
    assert not [w for w in state.rounds[0].warnings if "forgetting" in w]

    off = run_teaching(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply(), score=general_score()),
        RunConfig(
            **LEGACY_RULES, rounds=1, plan_budget=4, explain_budget=2, generate_budget=0, general_probe=0
        ),
        tmp_path / "off.json",
        train_fn=trainer,
    )
    assert off.rounds[0].exam["general"] is None and not off.base_general
    # A student that cannot score (served over HTTP) is not probed, and the run goes on.
    unscored = run_teaching(
        course,
        ScriptedLLM("teacher", teacher_reply()),
        ScriptedLLM("student", student_reply()),
        RunConfig(**LEGACY_RULES, rounds=1, plan_budget=4, explain_budget=2, generate_budget=0),
        tmp_path / "unscored.json",
        train_fn=trainer,
    )
    assert unscored.finished and unscored.rounds[0].exam["general"] is None


def test_the_forgetting_warning_needs_a_drop_of_the_given_size():
    general = {"items": 12, "base_accuracy": 0.75, "accuracy": 0.5}
    assert "0.75 (base model) to 0.50 (-0.25)" in forgetting_warning(general, drop=0.2)
    assert forgetting_warning(general, drop=0.25) is not None  # exactly the drop still warns
    assert forgetting_warning(general, drop=0.3) is None
    assert forgetting_warning(general, drop=0.0) is None  # 0 turns it off
    assert forgetting_warning(None, drop=0.2) is None


def test_the_guard_drops_teacher_text_that_quotes_a_general_probe_question(tmp_path):
    course = mini_course()
    quoted = GENERAL_PROBE[0].prompt
    teacher = ScriptedLLM("teacher", teacher_reply(extra=f"\nAn aside: {quoted}"))
    state = run_teaching(
        course,
        teacher,
        ScriptedLLM("student", student_reply()),
        RunConfig(**LEGACY_RULES, rounds=1, plan_budget=4, explain_budget=2, generate_budget=0),
        tmp_path / "s.json",
        train_fn=trainer,
    )
    explanations = state.rounds[0].explanations
    assert explanations and all(x.quotes_exam and not x.helped for x in explanations)


def test_old_run_states_resume_without_the_settings_added_since(tmp_path):
    data = RunConfig(rounds=1).to_dict()
    for key in OLD_RUN_DEFAULTS:
        data.pop(key)
    old = RunConfig.from_dict(data)
    assert (old.levels, old.confidence_z, old.general_probe) == ("stretch", 0.0, 0)
    assert RunConfig().confidence_z == 1.96 and RunConfig().general_probe == 16


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("confidence_z", -0.5),
        ("confidence_z", float("inf")),
        ("confidence_z", 6),
        ("confidence_z", True),
        ("general_probe", -1),
        ("forgetting_warning_drop", 1.5),
        ("choice_scoring", "logits"),
    ],
)
def test_it_rejects_bad_probe_and_scoring_settings(setting, value):
    with pytest.raises(ValueError, match=setting):
        RunConfig(**{setting: value})


# ---------------------------------------------------------------- multiple choice by likelihood


def _question(conversation) -> str:
    content = conversation[-1]["content"]
    return content.split("Now answer this question.\n", 1)[-1].split("\nAnswer with the final", 1)[0]


def balanced(sequence: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{", ">": "<"}, []
    for char in sequence.split():
        if char in pairs.values():
            stack.append(char)
        elif not stack or stack.pop() != pairs[char]:
            return False
    return not stack


def parens_gold(text: str) -> str:
    """The right answer to the (last) bracket sequence in ``text``, worked out as the task asks."""
    return "Valid" if balanced(re.findall(r"Sequence: ([^\n]*)", text)[-1]) else "Invalid"


def parens_teacher() -> ScriptedLLM:
    def reply(kind, question, conversation, adapter):
        content = conversation[-1]["content"]
        if kind == "generate":  # two new sequences, one of each kind, in the requested format
            return "".join(
                f"Question: Determine whether the given sequence of parentheses is properly matched.\n"
                f"Sequence: {seq}\nOptions: Valid | Invalid\nSolution: match each bracket.\n"
                f"Answer: {'Valid' if balanced(seq) else 'Invalid'}\n---\n"
                for seq in ("( [ ] ) { }", "( ] [ )")
            )
        if is_general(question):
            return f"Answer: {known(question)}"
        return (
            f"Mistake: a bracket is left open.\nSolution: match each bracket.\nAnswer: {parens_gold(content)}"
        )

    return ScriptedLLM("teacher", reply)


def parens_student(generate_calls: list) -> ScriptedLLM:
    """Answers only by likelihood: the base always prefers "Valid"; a trained adapter, or an explanation
    in context, prefers the right option. Generating an answer to a choice item is a test failure."""

    def reply(kind, question, conversation, adapter):
        generate_calls.append(question)
        return "Answer: Valid"

    def score(kind, question, answer, adapter):
        if is_general(question):  # cloze: the bare option is the whole reply
            right = known(question)
        elif adapter is not None or kind == "explained_answer":
            right = f"Answer: {parens_gold(question)}"
        else:
            right = "Answer: Valid"
        return -0.1 if answer == right else -2.0

    return ScriptedLLM("student", reply, score=score)


@pytest.mark.skipif(not BIGBENCH.exists(), reason="../shared/data/bigbench is not on this machine")
def test_a_course_imported_from_bigbench_runs_every_step_answering_choices_by_likelihood(tmp_path):
    full = import_bigbench(BIGBENCH, course_key="parens", skill_key="parens", skill_name="Valid parentheses")
    keep = {split: full.split(split)[:n] for split, n in (("train", 16), ("probe", 6), ("exam", 8))}
    course = Course(
        key=full.key,
        name=full.name,
        skills=full.skills,
        exercises=tuple(e for items in keep.values() for e in items),
    )
    generated_answers: list[str] = []
    student, teacher = parens_student(generated_answers), parens_teacher()
    config = RunConfig(
        **LEGACY_RULES,
        rounds=2,
        plan_budget=8,
        explain_budget=3,
        generate_budget=2,
        generate_k=2,
        siblings=1,
        choice_scoring="likelihood",
    )
    state = run_teaching(course, teacher, student, config, tmp_path / "s.json", train_fn=trainer)

    assert state.finished and all(r.done_steps == list(STEPS) for r in state.rounds)
    assert not generated_answers  # every choice, general probe included, was answered by likelihood
    first, second = state.rounds
    base_acc = sum(parens_gold(question_text(e)) == "Valid" for e in keep["exam"]) / 8
    assert first.exam["base_accuracy"] == pytest.approx(base_acc, abs=1e-4)
    assert second.exam["accuracy"] == 1.0 and first.exam["general"]["accuracy"] == 1.0
    # The teacher explained the student's real mistakes (an "Invalid" sequence called valid), through
    # the gate, and its generated sequences were kept by a second teacher answer (no code solver).
    assert first.explanations and all(x.passed_gate and x.split == "train" for x in first.explanations)
    train = {e.key: e for e in keep["train"]}
    assert all(train[x.item].answer == "Invalid" for x in first.explanations)
    kept = [g for g in first.generated if g.kept]
    assert kept and {g.verified_by for g in kept} == {"teacher_agreement"}
    # Exam and probe items never reached a record.
    held = {e.key for e in keep["exam"] + keep["probe"]}
    records = [r for rnd in state.rounds for r in rnd.sft_records]
    assert records and not [r for r in records if r["meta"].get("item") in held]


def test_likelihood_answers_need_a_student_that_can_score(tmp_path):
    course = mini_course()
    student = ScriptedLLM("student", student_reply())  # cannot score: like a model behind an HTTP API
    config = RunConfig(
        **LEGACY_RULES,
        rounds=1,
        plan_budget=4,
        explain_budget=2,
        generate_budget=0,
        choice_scoring="likelihood",
    )
    teacher = ScriptedLLM("teacher", teacher_reply())
    with pytest.raises(UnsupportedOperation, match="cannot score"):
        run_teaching(course, teacher, student, config, tmp_path / "s.json", train_fn=trainer)
    # Refused before anything was asked or saved, not after a round's teacher calls were paid for.
    assert not teacher.calls and not student.calls and not (tmp_path / "s.json").exists()


def test_the_general_probe_only_measures_a_run_trains_on_the_same_records_without_it(tmp_path):
    def run(general_probe: int, name: str):
        student = ScriptedLLM(
            "student", student_reply(), score=general_score(knows=lambda adapter: adapter is None)
        )
        config = RunConfig(
            **LEGACY_RULES,
            rounds=2,
            plan_budget=4,
            explain_budget=2,
            generate_budget=1,
            generate_k=2,
            siblings=1,
            general_probe=general_probe,
        )
        return run_teaching(
            mini_course(),
            ScriptedLLM("teacher", teacher_reply()),
            student,
            config,
            tmp_path / f"{name}.json",
            train_fn=trainer,
        )

    probed, unprobed = run(16, "probed"), run(0, "unprobed")
    assert probed.rounds[0].exam["general"]["items"] == 16 and unprobed.rounds[0].exam["general"] is None
    for a, b in zip(probed.rounds, unprobed.rounds, strict=True):
        assert a.sft_records and (a.plan, a.sft_records, a.dpo_records) == (
            b.plan,
            b.sft_records,
            b.dpo_records,
        )
        assert a.exam["accuracy"] == b.exam["accuracy"]

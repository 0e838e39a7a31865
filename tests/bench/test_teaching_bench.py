"""The teaching benchmark's own logic: the token-budget rule and the scripted teacher.

Plain Python (runs with ``-p no:django``): no model is loaded; the scripted teacher is checked through
the real teaching loop with a scripted student, so a change in the loop's prompts or gates that the
teacher no longer answers shows up here, not forty minutes into a benchmark run.
"""

from __future__ import annotations

import pytest

from bench.scripted_teacher import ScriptedTeacher, check_brackets
from bench.teaching import fill_to_budget
from tests.tutor.core.runs.fakes import ScriptedLLM, student_reply
from tutor.core.courses.course import Course, Exercise, Skill
from tutor.core.courses.packs import load_pack, verify
from tutor.core.runs import RunConfig, run_teaching

RECORDS = [{"i": i} for i in range(4)]


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


def _course():
    pack = load_pack("arithmetic", per_skill_per_split={"train": 6, "probe": 3, "exam": 3})
    skills = (Skill("add_2d", "Add two-digit numbers"), Skill("sub_2d", "Subtract two-digit numbers"))
    return Course(
        key="mini",
        name="mini",
        skills=skills,
        exercises=tuple(e for e in pack.exercises if e.skill in {"add_2d", "sub_2d"}),
    )


def test_its_explanations_pass_the_gate_and_its_new_items_are_verified_and_new(tmp_path):
    course = _course()
    teacher = ScriptedTeacher(course, seed=0)
    student = ScriptedLLM("student", student_reply())  # always wrong without an explanation in context
    config = RunConfig(rounds=2, plan_budget=4, explain_budget=4, generate_budget=2, generate_k=3, siblings=1)
    state = run_teaching(course, teacher, student, config, tmp_path / "state.json", train_fn=lambda *a: None)

    explanations = [x for r in state.rounds for x in r.explanations]
    assert explanations and all(x.passed_gate for x in explanations)
    # Tailored to the student's actual answer, and the part that is trained on is the gold worked solution.
    assert all("999999" in x.text.split("\nSolution:")[0] for x in explanations)
    by_key = {e.key: e for e in course.exercises}
    assert all(x.text.endswith(by_key[x.item].solution) for x in explanations)

    generated = [g for r in state.rounds for g in r.generated]
    assert len(generated) == 2 * 2 * 3 and all(g.kept and g.verified_by == "solver" for g in generated)
    prompts = [g.prompt for g in generated]
    assert len(set(prompts)) == len(prompts)  # the second round asks again and gets new items
    assert not set(prompts) & {e.prompt for e in course.exercises}
    assert all(
        g.skill == by_key[g.source_item].skill and g.difficulty == by_key[g.source_item].difficulty
        for g in generated
    )
    assert state.teacher_exam and all(a.correct for a in state.teacher_exam.values())


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

"""JSONL course import/export and the BIG-bench importer."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.paths import BIGBENCH_DIR
from tutor.core.courses.formats import CourseImportError, course_to_jsonl, import_bigbench, parse_course_jsonl
from tutor.core.courses.grading import grade
from tutor.core.courses.packs import arithmetic_pack

BIGBENCH = BIGBENCH_DIR
needs_bigbench = pytest.mark.skipif(not BIGBENCH.is_dir(), reason="no ../shared/data/bigbench")


def jsonl(*records: dict | str) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


HEADER = {"type": "course", "key": "fr", "name": "Fractions"}
SKILL_A = {"type": "skill", "key": "a", "name": "A"}
SKILL_B = {"type": "skill", "key": "b", "name": "B", "prerequisites": ["a"]}


def exercise(key: str, **fields) -> dict:
    return {
        "type": "exercise",
        "key": key,
        "skill": "a",
        "prompt": f"Q {key}?",
        "answer": "1",
        "answer_type": "number",
        "split": "train",
    } | fields


def errors_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(CourseImportError) as info:
        parse_course_jsonl(text)
    return info.value.errors


def test_it_imports_a_course():
    text = jsonl(
        HEADER,
        SKILL_A,
        "",
        SKILL_B,
        exercise("e1"),
        exercise("e2", skill="b", answer_type="choice", answer="x", options=["x", "y"], split="exam"),
        exercise("e3", answer=7, split="probe", difficulty=2, solution="3 + 4 = 7.\nAnswer: 7"),
    )
    course = parse_course_jsonl(text)
    assert (course.key, course.name) == ("fr", "Fractions")
    assert [s.key for s in course.skills_in_order()] == ["a", "b"]
    assert course.split("exam")[0].options == ("x", "y")
    assert course.split("probe")[0].answer == "7"  # a JSON number is accepted as a number answer
    assert course.split("probe")[0].difficulty == 2


def test_it_reports_every_bad_line_with_its_number():
    text = jsonl(
        HEADER,  # 1
        SKILL_A,  # 2
        "{not json",  # 3
        exercise("e1", answer_type="choice", answer="z", options=["x", "y"]),  # 4
        exercise("e2", prerequisites=[]),  # 5: unknown field
        exercise("e3", skill="nope"),  # 6: unknown skill (cross-line)
        {"type": "lesson"},  # 7
        ["a list"],  # 8
        exercise("e4", split="test"),  # 9
        exercise("e5", answer="lots"),  # 10
        {"type": "skill", "key": "b", "name": "B", "prerequisites": ["zzz"]},  # 11
        exercise("e1"),  # 12: duplicate key of a broken line? e1 failed
        {k: v for k, v in exercise("e6").items() if k != "split"},  # 13: split is required
    )
    errors = errors_of(text)
    lines = [line for line, _ in errors]
    assert lines == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    by_line = dict(errors)
    assert "not valid JSON" in by_line[3]
    assert "not one of the options" in by_line[4]
    assert "unknown field(s) prerequisites" in by_line[5]
    assert "unknown skill 'nope'" in by_line[6]
    assert "split must be one of" in by_line[9]
    assert "not a number" in by_line[10]
    assert "unknown prerequisite 'zzz'" in by_line[11]
    assert "missing field(s) split" in by_line[13]


def test_it_reports_cross_line_errors_at_the_referring_line():
    text = jsonl(
        HEADER,
        SKILL_A,
        SKILL_A,
        exercise("e1"),
        exercise("e1", prompt="other"),
        exercise("e2", prompt="Q e1?", split="exam"),
    )
    assert errors_of(text) == [
        (3, "duplicate skill key 'a'"),
        (5, "duplicate exercise key 'e1'"),
        (6, "exercise e2: same prompt as e1 but in split 'exam', not 'train'"),
    ]


def test_it_reports_a_cycle_at_a_skill_line():
    text = jsonl(HEADER, {"type": "skill", "key": "a", "name": "A", "prerequisites": ["b"]}, SKILL_B)
    assert errors_of(text) == [(2, "prerequisite cycle: a -> b -> a")]


def test_it_does_not_repeat_an_error_for_references_to_a_broken_line():
    # Skill a is broken (no name); the exercise that uses it is not reported again.
    text = jsonl(HEADER, {"type": "skill", "key": "a"}, exercise("e1"))
    assert [line for line, _ in errors_of(text)] == [2]


def test_it_needs_exactly_one_course_line():
    assert errors_of(jsonl(SKILL_A)) == [(0, 'no course line ({"type": "course", "key": ..., "name": ...})')]
    assert errors_of("")[0][0] == 0
    errors = errors_of(jsonl(HEADER, SKILL_A, HEADER))
    assert errors == [(3, "a second course line (the first is line 1)")]
    assert [line for line, _ in errors_of(jsonl({"type": "course", "key": "has space", "name": "X"}))] == [1]


def test_it_formats_the_error_message_with_line_numbers():
    with pytest.raises(CourseImportError, match=r"^line 2: not valid JSON"):
        parse_course_jsonl(jsonl(HEADER, "nope"))


def test_it_round_trips_a_course_through_jsonl():
    course = arithmetic_pack(seed=3, per_skill_per_split=2)
    assert parse_course_jsonl(course_to_jsonl(course)) == course


@needs_bigbench
def test_it_imports_bigbench_multiple_choice_with_counts_and_answers():
    course = import_bigbench(
        BIGBENCH / "elementary_math_qa.json",
        course_key="emqa",
        skill_key="math_qa",
        skill_name="Math word problems",
        probe_fraction=0.2,
        exam_fraction=0.3,
        seed=7,
    )
    assert len(course.exercises) == 1500
    assert Counter(e.split for e in course.exercises) == {"train": 750, "probe": 300, "exam": 450}
    first = next(e for e in course.exercises if e.key == "math_qa-0001")
    assert first.options == ("229", "270", "877", "266", "281")
    assert first.answer == "270"
    assert first.answer_type == "choice"
    assert first.prompt.endswith("how long is her book ?")
    assert {e.skill for e in course.exercises} == {"math_qa"}
    # Every gold answer is gradable against itself.
    assert all(grade(e, f"Answer: {e.answer}").correct for e in course.exercises[:200])


@needs_bigbench
def test_it_imports_bigbench_valid_parentheses_with_self_contained_prompts():
    course = import_bigbench(
        BIGBENCH / "valid_parentheses.json",
        course_key="vp",
        skill_key="parens",
        skill_name="Balanced brackets",
        probe_fraction=0.1,
        exam_fraction=0.2,
        seed=0,
    )
    assert Counter(e.split for e in course.exercises) == {"train": 700, "probe": 100, "exam": 200}
    assert Counter(e.answer for e in course.exercises) == {"Invalid": 568, "Valid": 432}
    assert course.exercises[0].prompt.startswith("Determine whether the given sequence")
    assert "\nSequence: [ { ] }" in course.exercises[0].prompt


@needs_bigbench
def test_it_splits_bigbench_deterministically_per_seed():
    def splits(seed: int) -> dict[str, str]:
        course = import_bigbench(
            BIGBENCH / "valid_parentheses.json",
            course_key="vp",
            skill_key="p",
            skill_name="P",
            probe_fraction=0.2,
            exam_fraction=0.3,
            seed=seed,
        )
        return {e.key: e.split for e in course.exercises}

    assert splits(1) == splits(1)
    assert splits(1) != splits(2)


def test_it_keeps_duplicate_bigbench_questions_in_one_split(tmp_path):
    examples = [{"input": f"q{i % 5}", "target_scores": {"yes": 1, "no": 0}} for i in range(40)]
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"name": "dups", "examples": examples}))
    course = import_bigbench(
        path, course_key="d", skill_key="d", skill_name="D", probe_fraction=0.2, exam_fraction=0.4, seed=0
    )
    split_of_prompt: dict[str, set[str]] = {}
    for e in course.exercises:
        split_of_prompt.setdefault(e.prompt, set()).add(e.split)
    assert all(len(splits) == 1 for splits in split_of_prompt.values())


def test_it_reports_bad_bigbench_examples_by_number(tmp_path):
    examples = [
        {"input": "ok", "target_scores": {"a": 1, "b": 0}},
        {"input": "two right", "target_scores": {"a": 1, "b": 1}},
        {"input": "free text", "target": "x"},
        {"input": "", "target_scores": {"a": 1, "b": 0}},
    ]
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"examples": examples}))
    with pytest.raises(CourseImportError) as info:
        import_bigbench(path, course_key="t", skill_key="t", skill_name="T", seed=0)
    assert [line for line, _ in info.value.errors] == [2, 3, 4]


def test_it_rejects_impossible_split_fractions(tmp_path):
    with pytest.raises(ValueError, match="add up to at most 1"):
        import_bigbench(
            tmp_path / "x.json",
            course_key="t",
            skill_key="t",
            skill_name="T",
            probe_fraction=0.6,
            exam_fraction=0.6,
            seed=0,
        )


def test_it_reports_json_nested_too_deeply_as_a_bad_line_not_a_crash():
    header = json.dumps({"type": "course", "key": "c", "name": "C"})
    with pytest.raises(CourseImportError, match=r"line 2: not valid JSON \(nested too deeply\)"):
        parse_course_jsonl(header + "\n" + '{"a":' * 100_000 + "1" + "}" * 100_000)


def test_it_refuses_a_course_key_that_is_not_a_slug_with_the_line():
    text = "\n".join(
        json.dumps(r)
        for r in [
            {"type": "course", "key": "fractions.v2", "name": "F"},
            {"type": "skill", "key": "add", "name": "Add"},
        ]
    )
    with pytest.raises(CourseImportError, match=r"line 1: course key 'fractions.v2' may hold only"):
        parse_course_jsonl(text)


def test_held_out_items_read_with_defaults_and_every_bad_line_reported():
    from tutor.core.courses.formats import parse_items_jsonl

    items = parse_items_jsonl(
        '{"type": "course", "key": "c", "name": "C"}\n'
        '{"prompt": "What is 7 + 5?", "answer": 12}\n'
        "\n"
        '{"prompt": "Capital of France?", "answer": "Paris", "skill": "geo", "key": "q2"}\n'
    )
    assert [(e.key, e.skill, e.answer, e.answer_type, e.split) for e in items] == [
        ("item-2", "uploaded", "12", "number", "exam"),
        ("q2", "geo", "Paris", "text", "exam"),
    ]
    with pytest.raises(CourseImportError) as caught:
        parse_items_jsonl('{"prompt": "x"}\n[1]\n{"prompt": "y", "answer": 1, "anwser": 2}\n{"a": {"a": 1\n')
    assert [line for line, _ in caught.value.errors] == [1, 2, 3, 4]
    assert "missing field(s) answer" in str(caught.value) and "unknown field(s) anwser" in str(caught.value)
    for empty in ("", "\n\n", '{"type": "skill", "key": "s", "name": "S"}'):
        with pytest.raises(CourseImportError, match="no items"):
            parse_items_jsonl(empty)
    with pytest.raises(CourseImportError, match="used twice"):
        parse_items_jsonl(
            '{"key": "k", "prompt": "a", "answer": 1}\n{"key": "k", "prompt": "b", "answer": 2}'
        )

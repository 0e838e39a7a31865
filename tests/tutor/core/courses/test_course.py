"""Course, Skill and Exercise validation, split helpers and the exam guard."""

from __future__ import annotations

import pytest

from tutor.core.courses.course import Course, CourseError, ExamLeakError, Exercise, Skill, training_safe


def skill(key: str, *prerequisites: str) -> Skill:
    return Skill(key=key, name=key.title(), prerequisites=prerequisites)


def item(key: str, skill_key: str = "add", split: str = "train", **fields) -> Exercise:
    values = {"prompt": f"What is {key}?", "answer": "3", "answer_type": "number"} | fields
    return Exercise(key=key, skill=skill_key, split=split, **values)


def course(skills, exercises=()) -> Course:
    return Course(key="c", name="C", skills=tuple(skills), exercises=tuple(exercises))


def test_it_builds_a_valid_course():
    c = course([skill("add"), skill("mul", "add")], [item("e1"), item("e2", "mul", "exam")])
    assert [e.key for e in c.split("exam")] == ["e2"]
    assert c.skill("mul").prerequisites == ("add",)
    assert c.exercises_for("add") == (c.exercises[0],)
    assert c.max_difficulty("add") == 1


@pytest.mark.parametrize("key", ["fractions.v2", "a/b", "é", "x" * 101])
def test_course_and_skill_keys_must_be_slugs_because_they_name_web_addresses(key):
    with pytest.raises(CourseError, match="may hold only letters, digits"):
        Course(key=key, name="C", skills=(skill("add"),))
    with pytest.raises(CourseError, match="may hold only letters, digits"):
        skill(key)
    assert Course(key="fractions-v2_1", name="C", skills=(skill("add_1d"),)).key == "fractions-v2_1"


def test_it_orders_skills_prerequisites_first_keeping_declaration_order():
    c = course([skill("c", "b"), skill("b", "a"), skill("x"), skill("a")])
    assert [s.key for s in c.skills_in_order()] == ["x", "a", "b", "c"]


def test_it_rejects_an_unknown_prerequisite():
    with pytest.raises(CourseError, match="unknown prerequisite 'nope'"):
        course([skill("add", "nope")])


def test_it_reports_a_prerequisite_cycle_as_a_path():
    with pytest.raises(CourseError, match=r"prerequisite cycle: a -> c -> b -> a"):
        course([skill("a", "c"), skill("b", "a"), skill("c", "b"), skill("d", "a")])


def test_it_rejects_a_skill_that_requires_itself():
    with pytest.raises(CourseError, match="own prerequisite"):
        skill("a", "a")


def test_it_rejects_duplicate_keys():
    with pytest.raises(CourseError, match="duplicate skill key 'add'"):
        course([skill("add"), skill("add")])
    with pytest.raises(CourseError, match="duplicate exercise key 'e1'"):
        course([skill("add")], [item("e1"), item("e1", prompt="other")])


def test_it_rejects_an_exercise_of_an_unknown_skill():
    with pytest.raises(CourseError, match="unknown skill 'div'"):
        course([skill("add")], [item("e1", "div")])


def test_it_lists_every_problem_in_one_error():
    with pytest.raises(CourseError) as info:
        course([skill("add", "x"), skill("add")], [item("e1", "div")])
    message = str(info.value)
    for expected in ("unknown prerequisite 'x'", "duplicate skill key", "unknown skill 'div'"):
        assert expected in message


def test_it_requires_choice_answers_among_distinct_options():
    ok = item("e1", answer="b", answer_type="choice", options=("a", "b"))
    assert ok.options == ("a", "b")
    with pytest.raises(CourseError, match="not one of the options"):
        item("e1", answer="c", answer_type="choice", options=("a", "b"))
    with pytest.raises(CourseError, match="at least two options"):
        item("e1", answer="a", answer_type="choice", options=("a",))
    with pytest.raises(CourseError, match="same once normalised"):
        item("e1", answer="a", answer_type="choice", options=("a", " A "))
    with pytest.raises(CourseError, match="only for answer_type 'choice'"):
        item("e1", options=("3", "4"))


def test_it_requires_number_answers_that_parse():
    assert item("e1", answer="1,234").answer == "1,234"
    assert item("e2", answer="-3.5").answer == "-3.5"
    with pytest.raises(CourseError, match="is not a number"):
        item("e1", answer="about 12 or 13")


def test_it_rejects_bad_splits_types_and_difficulties():
    with pytest.raises(CourseError, match="split must be one of train, probe, exam"):
        item("e1", split="test")
    with pytest.raises(CourseError, match="answer_type must be one of"):
        item("e1", answer_type="fraction")
    for difficulty in (0, True, 1.5):
        with pytest.raises(CourseError, match="difficulty"):
            item("e1", difficulty=difficulty)
    with pytest.raises(CourseError, match="prompt"):
        item("e1", prompt="  ")
    with pytest.raises(CourseError, match="whitespace"):
        item("bad key")


def test_it_rejects_the_same_prompt_in_two_splits():
    with pytest.raises(CourseError, match="same prompt as e1 but in split 'exam'"):
        course([skill("add")], [item("e1", prompt="1 + 2?"), item("e2", split="exam", prompt="1  +  2?")])
    # The same prompt twice in one split is allowed (a repeated drill).
    course([skill("add")], [item("e1", prompt="1 + 2?"), item("e2", prompt="1 + 2?")])


def test_it_rejects_an_unknown_split_name():
    with pytest.raises(ValueError):
        course([skill("add")]).split("test")


def test_it_lets_training_items_through_the_exam_guard():
    items = [item("e1"), item("e2", split="probe")]
    assert training_safe(iter(items)) == tuple(items)


def test_it_raises_when_an_exam_item_reaches_training():
    items = [item("e1"), item("e2", split="exam")]
    with pytest.raises(ExamLeakError, match="e2"):
        training_safe(items)


def test_it_guards_every_exam_item_of_a_course():
    c = course([skill("add")], [item(f"e{i}", split=("train", "probe", "exam")[i % 3]) for i in range(9)])
    training_safe(c.split("train") + c.split("probe"))
    with pytest.raises(ExamLeakError, match="e2, e5, e8"):
        training_safe(c.exercises)

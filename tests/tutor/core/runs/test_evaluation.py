"""Scores with their noise: Wilson intervals, and what counts as an adapter's difference."""

from __future__ import annotations

import pytest

from tutor.core.courses.course import Exercise
from tutor.core.runs.evaluation import Score, comparison, mcnemar_p, select_items, table, versus_base, wilson
from tutor.core.runs.state import Answer


def test_wilson_intervals_match_the_textbook_values():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)  # nothing asked: anything is possible


def test_mcnemar_reads_only_the_items_the_two_disagree_on():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(2, 0) == 0.5  # two items gained, none lost: could be chance
    assert mcnemar_p(6, 0) == pytest.approx(0.03125)
    assert mcnemar_p(10, 2) == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar_p(5, 5) == 1.0


def answers(keys_right: set[str], keys: list[str]) -> dict[str, Answer]:
    return {k: Answer(k, "", None, k in keys_right) for k in keys}


def test_an_adapter_is_marked_where_it_gains_or_loses_beyond_chance_on_the_same_items():
    items = [Exercise(f"a{i}", "add", f"What is {i} + 1?", str(i + 1), "number") for i in range(8)]
    items += [Exercise(f"m{i}", "mul", f"What is {i} * 2?", str(i * 2), "number") for i in range(2)]
    keys = [e.key for e in items]
    base = answers({"m0", "m1"}, keys)
    after = answers({f"a{i}" for i in range(8)}, keys)  # 8 add items gained, both mul items lost
    # add: 8 gained, 0 lost; mul: 2 lost could be chance; all: 8 against 2 could be too (p 0.11).
    assert versus_base(items, base, after) == {"add": 1, "mul": 0, "all": 0}
    assert versus_base(items, after, base) == {"add": -1, "mul": 0, "all": 0}


def test_the_table_shows_intervals_and_the_marks_it_is_given():
    text = table({"base": {"add": Score(0, 10)}, "v2": {"add": Score(10, 10)}}, {"v2": {"add": 1}})
    header, row = text.splitlines()
    assert header.split() == ["skill", "n", "base", "v2"]
    assert row.startswith("add") and row.endswith("0% [0%-28%]  100% [72%-100%] +")


def test_a_comparison_has_each_columns_interval_and_its_mark_against_the_first():
    items = [Exercise(f"a{i}", "add", f"What is {i} + 1?", str(i + 1), "number") for i in range(8)]
    items += [Exercise(f"m{i}", "mul", f"What is {i} * 2?", str(i * 2), "number") for i in range(8)]
    base = {e.key: e.skill == "mul" for e in items}  # knows mul only
    swapped = {e.key: e.skill == "add" for e in items}  # learned add, forgot mul
    result = comparison(items, {"base": base, "v1": swapped, "same": dict(base)})
    assert result["labels"] == ["base", "v1", "same"]
    rows = {r["skill"]: r for r in result["rows"]}
    assert list(rows) == ["add", "mul", "all"]
    first, v1, same = rows["add"]["cells"]
    assert "mark" not in first and (first["correct"], first["n"]) == (0, 8)
    assert (v1["accuracy"], v1["gained"], v1["lost"], v1["mark"]) == (1.0, 8, 0, 1)
    assert (same["gained"], same["lost"], same["mark"]) == (0, 0, 0)
    assert rows["mul"]["cells"][1]["mark"] == -1  # a regression beyond noise
    assert rows["all"]["cells"][1]["mark"] == 0  # 8 gained against 8 lost
    assert (v1["low"], v1["high"]) == pytest.approx(wilson(8, 8))


def test_the_splits_select_the_items_they_name():
    from tutor.core.courses.packs import arithmetic_pack

    course = arithmetic_pack(0, per_skill_per_split={"train": 2, "probe": 2, "exam": 4})
    keep = {s.key for s in course.keep_skills}
    held_out = select_items(course, "held-out")
    assert held_out and all(e.held_out and e.split == "exam" for e in held_out)
    assert {e.skill for e in select_items(course, "keep")} == keep
    assert len(select_items(course, "exam")) == len(course.split("exam"))
    assert select_items(course, "probe") == list(course.split("probe"))
    with pytest.raises(ValueError, match="split must be one of"):
        select_items(course, "train")  # never: an evaluation is not a look at training data

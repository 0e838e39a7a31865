"""Scores with their noise: Wilson intervals and what counts as a difference."""

from __future__ import annotations

import pytest

from tutor.core.runs.evaluation import Score, table, wilson


def test_wilson_intervals_match_the_textbook_values():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)  # nothing asked: anything is possible


def test_a_difference_counts_only_when_the_intervals_are_apart():
    assert Score(10, 10).versus(Score(0, 10)) == 1
    assert Score(0, 10).versus(Score(10, 10)) == -1
    assert Score(2, 2).versus(Score(0, 2)) == 0  # two items each: inside the noise


def test_the_table_marks_each_column_against_the_first():
    text = table({"base": {"add": Score(0, 10)}, "v2": {"add": Score(10, 10)}})
    header, row = text.splitlines()
    assert header.split() == ["skill", "n", "base", "v2"]
    assert row.startswith("add") and row.endswith("100% [72%-100%] +")

"""teachloop.consumers: how every socket reads htmx's form messages."""

from __future__ import annotations

import json

import pytest

from teachloop.consumers import parse_form


@pytest.mark.parametrize("raw", ["", "not json", "42", "[1, 2]", "null", '"prompt"', "[" * 100_000])
def test_it_ignores_what_is_not_a_json_object(raw):
    assert parse_form(raw) is None


def test_it_reads_only_string_values():
    form = parse_form(json.dumps({"prompt": "hi", "question": None, "retry": 3, "stop": ""}))
    assert form.text("prompt") == "hi"
    assert form.text("question") is None  # never the question "None"
    assert form.text("retry") is None
    assert form.text("missing") is None
    assert "stop" in form and "missing" not in form

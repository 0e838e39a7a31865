"""Record shapes per method, and JSONL parsing that reports every bad line by number."""

from __future__ import annotations

import json

import pytest

from training.core.datasets import DatasetError, parse_jsonl, validate_records


def chat(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


GOOD_SFT = chat(("system", "Be brief."), ("user", "2+2?"), ("assistant", "4"))


def lines(*objects) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects)


def test_it_parses_sft_jsonl_and_ignores_blank_lines():
    multi_turn = chat(("user", "hi"), ("assistant", "hello"), ("user", "bye"), ("assistant", "ciao"))
    text = lines(GOOD_SFT, "", "   ", multi_turn)
    records = parse_jsonl(text, "sft")
    assert len(records) == 2
    assert records[0] == GOOD_SFT


def test_it_lists_every_bad_line_with_its_line_number():
    text = lines(
        GOOD_SFT,  # 1 ok
        "{not json",  # 2
        chat(("user", "only a question")),  # 3 no answer
        chat(("user", "q"), ("assistant", "a"), ("user", "q2")),  # 4 ends with user
        "",  # 5 blank, skipped
        chat(("user", "q"), ("robot", "a")),  # 6 bad role
        chat(("user", "q"), ("assistant", "  ")),  # 7 empty content
        "[1, 2]",  # 8 not an object
        {"text": "plain"},  # 9 no messages
        chat(("user", "q"), ("system", "late"), ("assistant", "a")),  # 10 system not first
    )
    with pytest.raises(DatasetError) as caught:
        parse_jsonl(text, "sft")
    errors = dict(caught.value.errors)
    assert sorted(errors) == [2, 3, 4, 6, 7, 8, 9, 10]
    assert "invalid JSON" in errors[2]
    assert "prompt" in errors[3] and "assistant" in errors[3]
    assert "last message must be from the assistant" in errors[4]
    assert "'robot'" in errors[6]
    assert "empty content" in errors[7]
    assert "JSON object" in errors[8]
    assert '"messages"' in errors[9]
    assert "system" in errors[10]
    assert str(caught.value).startswith("record 2: invalid JSON")


def test_it_rejects_an_empty_dataset():
    with pytest.raises(DatasetError, match="empty"):
        parse_jsonl("\n\n", "sft")
    with pytest.raises(DatasetError, match="empty"):
        validate_records([], "sft")


def test_it_reads_bytes_lines_and_a_byte_order_mark():
    text = "\ufeff" + json.dumps(GOOD_SFT) + "\n"
    assert parse_jsonl(text.encode("utf-8"), "sft") == [GOOD_SFT]
    assert parse_jsonl([json.dumps(GOOD_SFT).encode(), ""], "sft") == [GOOD_SFT]


def test_it_numbers_already_parsed_records_from_one():
    with pytest.raises(DatasetError) as caught:
        validate_records([GOOD_SFT, {"messages": []}, GOOD_SFT, "nope"], "sft")
    assert [number for number, _ in caught.value.errors] == [2, 4]


def test_it_accepts_dpo_pairs_as_strings_or_conversations():
    validate_records(
        [
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "id": 17},
            {
                "prompt": [{"role": "user", "content": "2+2?"}],
                "chosen": [{"role": "assistant", "content": "4"}],
                "rejected": [{"role": "assistant", "content": "5"}],
            },
        ],
        "dpo",
    )


def test_it_names_what_is_wrong_with_dpo_records():
    user_q = [{"role": "user", "content": "2+2?"}]
    bad = [
        {"prompt": "2+2?", "chosen": "4"},
        {"prompt": "2+2?", "chosen": [{"role": "assistant", "content": "4"}], "rejected": "5"},
        {"prompt": "2+2?", "chosen": "4", "rejected": "4"},
        {
            "prompt": user_q,
            "chosen": [{"role": "user", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
        {"prompt": 42, "chosen": "4", "rejected": "5"},
        {"prompt": "", "chosen": "4", "rejected": "5"},
    ]
    with pytest.raises(DatasetError) as caught:
        validate_records(bad, "dpo")
    errors = dict(caught.value.errors)
    assert sorted(errors) == [1, 2, 3, 4, 5, 6]
    assert 'missing "rejected"' in errors[1]
    assert "must be a list" in errors[2] or "must be a string" in errors[2]
    assert "identical" in errors[3]
    assert "assistant" in errors[4]
    assert "string or a list of messages" in errors[5]
    assert "empty" in errors[6]


def test_it_requires_a_true_or_false_kto_label():
    good = {"prompt": "2+2?", "completion": "4", "label": True}
    validate_records([good, {**good, "completion": "5", "label": False}], "kto")
    with pytest.raises(DatasetError) as caught:
        validate_records([good, {**good, "label": 1}, {"prompt": "2+2?", "label": True}], "kto")
    errors = dict(caught.value.errors)
    assert "true" in errors[2] and "false" in errors[2]
    assert 'missing "completion"' in errors[3]


def test_it_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method"):
        parse_jsonl(json.dumps(GOOD_SFT), "ppo")


def test_it_reports_json_nested_too_deeply_as_a_bad_line_not_a_crash():
    good = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    )
    with pytest.raises(DatasetError, match=r"record 2: invalid JSON: nested too deeply"):
        parse_jsonl(good + "\n" + "[" * 100_000 + "]" * 100_000, "sft")

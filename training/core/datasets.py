"""Training records: their shapes per method, validation, and JSONL parsing.

Rules that matter:
- every bad record is reported, not just the first, each with its 1-based number (the line number
  for JSONL, blank lines included in the count but otherwise ignored), so an upload page can list
  them all at once;
- shapes follow TRL's dataset formats, the "conversational" ones for chat:
    sft  ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``,
         at least one prompt message and ending with an assistant message;
    dpo  ``{"prompt": ..., "chosen": ..., "rejected": ...}``, all strings, or a list of messages for
         the prompt and a list of assistant messages for chosen and rejected;
    kto  ``{"prompt": ..., "completion": ..., "label": true|false}``, strings or messages likewise;
- other top-level keys (ids, metadata) are allowed and ignored by training.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

from training.core.config import METHODS

ROLES = ("system", "user", "assistant")


class DatasetError(ValueError):
    """Bad training data. ``errors`` lists ``(record_number, reason)`` for every bad record (1-based)."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        shown = "; ".join(f"record {number}: {reason}" if number else reason for number, reason in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(shown + more)


def parse_jsonl(text_or_lines: str | bytes | Iterable[str | bytes], method: str) -> list[dict[str, Any]]:
    """Parse JSONL into validated records; DatasetError lists every bad line by its line number."""
    _check_method(method)
    if isinstance(text_or_lines, bytes):
        text_or_lines = text_or_lines.decode("utf-8")
    lines = text_or_lines.splitlines() if isinstance(text_or_lines, str) else text_or_lines
    records: list[dict[str, Any]] = []
    errors: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        if number == 1:
            line = line.removeprefix("\ufeff")  # editors on Windows save a byte-order mark
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append((number, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except RecursionError:
            errors.append((number, "invalid JSON: nested too deeply"))
            continue
        problem = record_problem(record, method)
        if problem:
            errors.append((number, problem))
        else:
            records.append(record)
    if errors:
        raise DatasetError(errors)
    if not records:
        raise DatasetError([(0, "the dataset is empty: no records")])
    return records


def validate_records(records: list[dict[str, Any]], method: str) -> None:
    """Raise DatasetError listing every bad record by its 1-based position, or if there are none."""
    _check_method(method)
    if not isinstance(records, list):
        raise DatasetError([(0, f"records must be a list, not {type(records).__name__}")])
    errors = [
        (number, problem)
        for number, record in enumerate(records, start=1)
        if (problem := record_problem(record, method))
    ]
    if errors:
        raise DatasetError(errors)
    if not records:
        raise DatasetError([(0, "the dataset is empty: no records")])


def record_problem(record: Any, method: str) -> str | None:
    """Why ``record`` cannot train with ``method``, or None when it can."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {_kind(record)}"
    check = {"sft": _sft_problem, "dpo": _dpo_problem, "kto": _kto_problem}[method]
    return check(record)


# --- per-method shapes ----------------------------------------------------------------------


def _sft_problem(record: dict[str, Any]) -> str | None:
    if "messages" not in record:
        return 'missing "messages" (a list of {"role", "content"} messages)'
    messages = record["messages"]
    problem = _messages_problem(messages, "messages")
    if problem:
        return problem
    if len(messages) < 2:
        return '"messages" needs a prompt (a user or system message) before the assistant\'s answer'
    if messages[-1]["role"] != "assistant":
        return f"the last message must be from the assistant, not {messages[-1]['role']!r}"
    return None


def _dpo_problem(record: dict[str, Any]) -> str | None:
    missing = [key for key in ("prompt", "chosen", "rejected") if key not in record]
    if missing:
        return "missing " + ", ".join(f'"{key}"' for key in missing)
    problem = _prompt_and_answers_problem(
        record["prompt"], {"chosen": record["chosen"], "rejected": record["rejected"]}
    )
    if problem:
        return problem
    if record["chosen"] == record["rejected"]:
        return '"chosen" and "rejected" are identical, so there is nothing to prefer'
    return None


def _kto_problem(record: dict[str, Any]) -> str | None:
    missing = [key for key in ("prompt", "completion", "label") if key not in record]
    if missing:
        return "missing " + ", ".join(f'"{key}"' for key in missing)
    if not isinstance(record["label"], bool):
        return f'"label" must be true (desirable) or false (undesirable), not {record["label"]!r}'
    return _prompt_and_answers_problem(record["prompt"], {"completion": record["completion"]})


def _prompt_and_answers_problem(prompt: Any, answers: dict[str, Any]) -> str | None:
    """Both plain strings, or a message list for the prompt and assistant message lists for answers."""
    if isinstance(prompt, str):
        if not prompt.strip():
            return '"prompt" is empty'
        for key, answer in answers.items():
            if not isinstance(answer, str):
                return f'"{key}" must be a string like "prompt", not {_kind(answer)}'
            if not answer.strip():
                return f'"{key}" is empty'
        return None
    if isinstance(prompt, list):
        problem = _messages_problem(prompt, "prompt")
        if problem:
            return problem
        if prompt[-1]["role"] == "assistant":
            return 'the "prompt" must not end with an assistant message (that is the answer)'
        for key, answer in answers.items():
            if not isinstance(answer, list):
                return f'"{key}" must be a list of assistant messages like "prompt", not {_kind(answer)}'
            problem = _messages_problem(answer, key)
            if problem:
                return problem
            if any(message["role"] != "assistant" for message in answer):
                return f'"{key}" may only hold assistant messages'
        return None
    return f'"prompt" must be a string or a list of messages, not {_kind(prompt)}'


def _messages_problem(messages: Any, key: str) -> str | None:
    if not isinstance(messages, list):
        return f'"{key}" must be a list of messages, not {_kind(messages)}'
    if not messages:
        return f'"{key}" is empty'
    for index, message in enumerate(messages, start=1):
        where = f"{key} #{index}"
        if not isinstance(message, dict):
            return f"{where} must be an object with role and content, not {_kind(message)}"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"{where} has role {role!r}; expected one of {', '.join(ROLES)}"
        if role == "system" and index != 1:
            return f"{where} is a system message; only the first message may be one"
        if not isinstance(content, str):
            return f"{where} content must be a string, not {_kind(content)}"
        if not content.strip():
            return f"{where} has empty content"
    return None


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def split_for_training(
    records: list[dict[str, Any]], *, eval_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The trainer's split: a seeded random ``eval_fraction`` of the records for evaluation (at
    least one, never all of them), the rest for training, each in the records' order."""
    if eval_fraction == 0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(records) - 1, max(1, round(len(records) * eval_fraction)))
    eval_ids = set(order[:n_eval])
    return (
        [r for i, r in enumerate(records) if i not in eval_ids],
        [r for i, r in enumerate(records) if i in eval_ids],
    )

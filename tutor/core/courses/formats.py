"""Courses to and from JSONL, and BIG-bench multiple-choice tasks into courses.

JSONL: one JSON object per line, blank lines ignored::

    {"type": "course", "key": "fractions", "name": "Fractions", "expert": ""}
    {"type": "skill", "key": "add_frac", "name": "Adding fractions", "description": "",
     "prerequisites": [], "keep": false}
    {"type": "exercise", "key": "f1", "skill": "add_frac", "prompt": "1/2 + 1/4 = ?",
     "answer": "3/4", "answer_type": "text", "split": "train", "solution": "...",
     "difficulty": 1, "options": [], "phrasing": "symbols", "held_out": false}

``expert`` (optional) names a built-in expert (``arithmetic``, ``counting``); ``keep`` marks a skill
to watch and never teach; ``phrasing`` names an item's wording and ``held_out`` keeps that wording
out of training (probe and exam only).

The rule that matters: **an import is all or nothing.** :func:`parse_course_jsonl` either
returns a whole valid course or raises :class:`CourseImportError` listing *every* problem with
its 1-based line number; errors that span lines (an unknown skill, a prerequisite cycle, a
prompt in two splits) are reported at the line that refers to the missing or clashing thing.
``split`` is required on every exercise: where an item goes is the one decision an author must
make on purpose, since exam items are held out from all teaching.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tutor.core.courses.course import Course, CourseError, Exercise, Skill, Split, course_issues
from tutor.core.courses.expert import PACK_EXPERTS
from tutor.core.courses.grading import normalize_option, parse_number

_COURSE_FIELDS = {"type", "key", "name", "expert"}
_SKILL_FIELDS = {"type", "key", "name", "description", "prerequisites", "keep"}
_EXERCISE_FIELDS = {
    "type",
    "key",
    "skill",
    "prompt",
    "answer",
    "answer_type",
    "options",
    "solution",
    "difficulty",
    "split",
    "phrasing",
    "held_out",
}
_REQUIRED = {
    "course": {"key", "name"},
    "skill": {"key", "name"},
    "exercise": {"key", "skill", "prompt", "answer", "answer_type", "split"},
}


class CourseImportError(ValueError):
    """Everything wrong with an import: ``errors`` is ``[(line, message), ...]``.

    Line 0 stands for the file as a whole (no course line, nothing in it). For a BIG-bench file
    the number is the 1-based position of the example in ``examples``.
    """

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = sorted(errors)
        shown = [
            f"{'file' if line == 0 else f'line {line}'}: {message}" for line, message in self.errors[:20]
        ]
        more = f"\n… and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        super().__init__("\n".join(shown) + more)


def _check_fields(record: dict[str, Any], kind: str) -> str | None:
    allowed = {"course": _COURSE_FIELDS, "skill": _SKILL_FIELDS, "exercise": _EXERCISE_FIELDS}[kind]
    # Unknown fields are errors: a typo like "prerequisite" would otherwise vanish silently.
    unknown = sorted(set(record) - allowed)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)} for a {kind}"
    missing = sorted(_REQUIRED[kind] - set(record))
    if missing:
        return f"missing field(s) {', '.join(missing)} for a {kind}"
    return None


def _exercise_from(record: dict[str, Any]) -> Exercise:
    answer = record["answer"]
    # JSON numbers are fine as number answers: 42 and "42" mean the same.
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    options = record.get("options", [])
    if not isinstance(options, list):
        raise CourseError("options must be a list of strings")
    return Exercise(
        key=record["key"],
        skill=record["skill"],
        prompt=record["prompt"],
        answer=answer,
        answer_type=record["answer_type"],
        options=tuple(options),
        solution=record.get("solution", ""),
        difficulty=record.get("difficulty", 1),
        split=record["split"],
        phrasing=record.get("phrasing", ""),
        held_out=record.get("held_out", False),
    )


def _skill_from(record: dict[str, Any]) -> Skill:
    prerequisites = record.get("prerequisites", [])
    if not isinstance(prerequisites, list):
        raise CourseError("prerequisites must be a list of skill keys")
    return Skill(
        key=record["key"],
        name=record["name"],
        description=record.get("description", ""),
        prerequisites=tuple(prerequisites),
        keep=record.get("keep", False),
    )


def _json_lines(text: str, errors: list[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each non-blank line's JSON object with its 1-based number; a line that is not one is added
    to ``errors`` (invalid JSON, nested too deeply, not an object) and skipped."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        except RecursionError:
            errors.append((number, "not valid JSON (nested too deeply)"))
            continue
        if not isinstance(record, dict):
            errors.append((number, "each line must be a JSON object"))
            continue
        yield number, record


def parse_course_jsonl(text: str) -> Course:
    """A course from JSONL text; raises :class:`CourseImportError` with every bad line."""
    errors: list[tuple[int, str]] = []
    header: tuple[int, dict[str, Any]] | None = None
    skills: list[Skill] = []
    skill_lines: list[int] = []
    exercises: list[Exercise] = []
    exercise_lines: list[int] = []
    # Keys whose own line is broken: references to them are not reported a second time.
    broken_keys: set[str] = set()
    saw_course_line = False

    for number, record in _json_lines(text, errors):
        kind = record.get("type")
        if kind not in ("course", "skill", "exercise"):
            errors.append((number, f"type must be course, skill or exercise, not {kind!r}"))
            continue
        saw_course_line = saw_course_line or kind == "course"
        problem = _check_fields(record, kind)
        if problem:
            errors.append((number, problem))
            if isinstance(record.get("key"), str):
                broken_keys.add(record["key"])
            continue
        try:
            if kind == "course":
                if header is not None:
                    errors.append((number, f"a second course line (the first is line {header[0]})"))
                    continue
                Course(key=record["key"], name=record["name"], skills=())  # checks key and name now
                if record.get("expert", "") not in ("", *PACK_EXPERTS):
                    raise CourseError(
                        f"expert must be one of {', '.join(PACK_EXPERTS)} or empty, not {record['expert']!r}"
                    )
                header = (number, record)
            elif kind == "skill":
                skills.append(_skill_from(record))
                skill_lines.append(number)
            else:
                exercises.append(_exercise_from(record))
                exercise_lines.append(number)
        except CourseError as exc:
            errors.append((number, str(exc)))
            if isinstance(record.get("key"), str):
                broken_keys.add(record["key"])

    if not saw_course_line:
        errors.append((0, 'no course line ({"type": "course", "key": ..., "name": ...})'))
    for issue in course_issues(skills, exercises):
        if issue.missing is not None and issue.missing in broken_keys:
            continue
        lines = skill_lines if issue.kind == "skill" else exercise_lines
        errors.append((lines[issue.index], issue.message))
    if header is not None and not errors:
        try:
            return Course(
                key=header[1]["key"],
                name=header[1]["name"],
                skills=tuple(skills),
                exercises=tuple(exercises),
                expert=header[1].get("expert", ""),
            )
        except CourseError as exc:
            errors.append((header[0], str(exc)))
    raise CourseImportError(errors)


def course_to_jsonl(course: Course) -> str:
    """The JSONL text that :func:`parse_course_jsonl` reads back into an equal course."""
    lines: list[dict[str, Any]] = [
        {"type": "course", "key": course.key, "name": course.name, "expert": course.expert}
    ]
    for skill in course.skills:
        lines.append(
            {
                "type": "skill",
                "key": skill.key,
                "name": skill.name,
                "description": skill.description,
                "prerequisites": list(skill.prerequisites),
                "keep": skill.keep,
            }
        )
    for e in course.exercises:
        lines.append(
            {
                "type": "exercise",
                "key": e.key,
                "skill": e.skill,
                "prompt": e.prompt,
                "answer": e.answer,
                "answer_type": e.answer_type,
                "options": list(e.options),
                "solution": e.solution,
                "difficulty": e.difficulty,
                "split": e.split,
                "phrasing": e.phrasing,
                "held_out": e.held_out,
            }
        )
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def import_bigbench(
    path: str | Path,
    *,
    course_key: str,
    skill_key: str,
    skill_name: str,
    probe_fraction: float = 0.2,
    exam_fraction: float = 0.3,
    seed: int = 0,
) -> Course:
    """A one-skill multiple-choice course from a BIG-bench JSON task file.

    Each example's ``target_scores`` gives the options in file order; the one option scored 1
    is the answer. The prompt is the task's ``task_prefix`` (own line) and
    ``example_input_prefix`` before the ``input``, when present, so an item reads on its own
    ("Determine whether ...\nSequence: ( ) ]").

    Splits are a seeded shuffle: ``round(n * exam_fraction)`` exam items,
    ``round(n * probe_fraction)`` probe items, the rest train; the same seed gives the same
    splits, and identical questions always share a split. Keys are
    ``<skill_key>-<example number>``, so an item keeps its key whatever the seed.

    BIG-bench files carry a canary string: they must not end up in a released model's training
    data. Use them to check the importer and as external probe / exam sets.
    """
    if not (0 <= probe_fraction <= 1 and 0 <= exam_fraction <= 1 and probe_fraction + exam_fraction <= 1):
        raise ValueError("probe_fraction and exam_fraction must be in [0, 1] and add up to at most 1")
    try:
        task = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CourseImportError([(exc.lineno, f"not valid JSON ({exc.msg})")]) from exc
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(examples, list) or not examples:
        raise CourseImportError([(0, "no 'examples' list in the task file")])

    task_prefix = task.get("task_prefix", "")
    input_prefix = task.get("example_input_prefix", "")
    task_prefix = task_prefix.strip() if isinstance(task_prefix, str) else ""
    input_prefix = input_prefix.strip() if isinstance(input_prefix, str) else ""
    width = len(str(len(examples)))
    rows: list[tuple[str, str, tuple[str, ...], str]] = []  # key, prompt, options, answer
    errors: list[tuple[int, str]] = []
    for number, example in enumerate(examples, start=1):
        problem = _bigbench_problem(example)
        if problem:
            errors.append((number, problem))
            continue
        scores = example["target_scores"]
        options = tuple(str(option) for option in scores)
        answer = next(str(option) for option, score in scores.items() if score == 1)
        question = f"{input_prefix} {example['input'].strip()}".strip()
        prompt = f"{task_prefix}\n{question}" if task_prefix else question
        rows.append((f"{skill_key}-{number:0{width}d}", prompt, options, answer))
    if errors:
        raise CourseImportError(errors)

    # Identical questions share a split, so a duplicate cannot put an exam item in train.
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for index, (_, prompt, options, _) in enumerate(rows):
        identity = (" ".join(prompt.casefold().split()), tuple(map(normalize_option, options)))
        groups.setdefault(identity, []).append(index)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    n_exam = round(len(rows) * exam_fraction)
    n_probe = round(len(rows) * probe_fraction)
    split_of: dict[int, Split] = {}
    placed = 0
    for group in order:
        split: Split = "exam" if placed < n_exam else "probe" if placed < n_exam + n_probe else "train"
        for index in group:
            split_of[index] = split
        placed += len(group)

    skill = Skill(key=skill_key, name=skill_name, description=str(task.get("description", "")))
    exercises = []
    for index, (key, prompt, options, answer) in enumerate(rows):
        try:
            exercises.append(
                Exercise(
                    key=key,
                    skill=skill_key,
                    prompt=prompt,
                    answer=answer,
                    answer_type="choice",
                    options=options,
                    split=split_of[index],
                )
            )
        except CourseError as exc:
            errors.append((index + 1, str(exc)))
    if errors:
        raise CourseImportError(errors)
    try:
        return Course(
            key=course_key,
            name=str(task.get("name", course_key)),
            skills=(skill,),
            exercises=tuple(exercises),
        )
    except CourseError as exc:
        raise CourseImportError([(0, str(exc))]) from exc


def _bigbench_problem(example: Any) -> str | None:
    if not isinstance(example, dict):
        return "an example must be an object"
    if not isinstance(example.get("input"), str) or not example["input"].strip():
        return "input must be a non-empty string"
    scores = example.get("target_scores")
    if not isinstance(scores, dict) or len(scores) < 2:
        return "target_scores must map at least two options to scores (is this a multiple-choice task?)"
    winners = [option for option, score in scores.items() if score == 1]
    if len(winners) != 1:
        return f"exactly one option must score 1, found {len(winners)}"
    return None


MAX_HELD_OUT_ITEMS = 5000


def parse_items_jsonl(text: str) -> tuple[Exercise, ...]:
    """Held-out items to evaluate on, one JSON object per line: ``prompt`` and ``answer`` required;
    ``skill`` (default ``uploaded``), ``answer_type`` (default ``number`` when the answer is a
    number as the grader reads one, :func:`~tutor.core.courses.grading.parse_number`, else
    ``text``), ``key`` (default ``item-<line>``) and ``options`` optional. Course lines (``type``
    course or skill) are skipped and an exercise line may carry every exercise field, so a course
    file reads too; every item counts as an exam item. Raises :class:`CourseImportError`
    with every bad line, and for a file with no item or more than ``MAX_HELD_OUT_ITEMS``."""
    errors: list[tuple[int, str]] = []
    items: list[Exercise] = []
    keys: set[str] = set()
    for number, record in _json_lines(text, errors):
        if record.get("type") in ("course", "skill"):
            continue
        missing = sorted({"prompt", "answer"} - set(record))
        if missing:
            errors.append((number, f"missing field(s) {', '.join(missing)}"))
            continue
        unknown = sorted(set(record) - _EXERCISE_FIELDS)
        if unknown:
            errors.append((number, f"unknown field(s) {', '.join(unknown)}"))
            continue
        answer = record["answer"]
        numeric = (isinstance(answer, (int, float)) and not isinstance(answer, bool)) or (
            isinstance(answer, str) and parse_number(answer) is not None
        )
        filled = {
            "key": f"item-{number}",
            "skill": "uploaded",
            "answer_type": "number" if numeric else "text",
            **record,
            "split": "exam",
        }
        try:
            exercise = _exercise_from(filled)
        except (CourseError, TypeError, ValueError) as exc:
            errors.append((number, str(exc)))
            continue
        if exercise.key in keys:
            errors.append((number, f"key {exercise.key!r} is used twice"))
            continue
        keys.add(exercise.key)
        items.append(exercise)
    if errors:
        raise CourseImportError(errors)
    if not items:
        raise CourseImportError([(0, "no items: each line needs a JSON object with a prompt and an answer")])
    if len(items) > MAX_HELD_OUT_ITEMS:
        raise CourseImportError(
            [(0, f"{len(items)} items; at most {MAX_HELD_OUT_ITEMS} are evaluated at once")]
        )
    return tuple(items)

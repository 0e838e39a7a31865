"""Courses: skills with prerequisites, and exercises with checkable answers.

A course is validated once, when it is built, so everything downstream may trust it: keys are
unique, prerequisites exist and form no cycle, every exercise names a known skill, gold answers
are gradable (numbers parse, a choice answer is one of the options), and no prompt sits in two
splits.

**The exam rule.** Exercises come in three splits: ``train`` (teach and generate from it),
``probe`` (diagnose the student each round) and ``exam`` (re-examine; the held-out measure of
the whole run). Exam items must never reach training data, explanations, feedback, or
teacher-generated items, or the exam stops measuring anything. Every caller that builds such
data passes its items through :func:`training_safe`, which raises :class:`ExamLeakError` on an
exam item instead of silently dropping it: a leak is a bug to fix, not data to filter.

**The phrasing rule.** An exercise may name the wording it is asked in (``phrasing``); wordings
marked ``held_out`` appear only in the probe and exam splits and are refused by
:func:`training_safe` like exam items, so a student is examined on words it never trained on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tutor.core.courses.grading import normalize_option, normalize_text, parse_number

Split = Literal["train", "probe", "exam"]
AnswerType = Literal["number", "text", "choice"]
SPLITS: tuple[str, ...] = ("train", "probe", "exam")
ANSWER_TYPES: tuple[str, ...] = ("number", "text", "choice")


class CourseError(ValueError):
    """A course, skill or exercise that breaks a rule; the message says which and why."""


class ExamLeakError(RuntimeError):
    """An exam item was about to be used for training, an explanation or generated data."""


_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")


def _check_key(value: object, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CourseError(f"{what} must be a non-empty string, not {value!r}")
    if value != value.strip() or any(c.isspace() for c in value):
        raise CourseError(f"{what} {value!r} must not contain whitespace")


def _check_slug(value: str, what: str) -> None:
    """Course and skill keys name web addresses: letters, digits, ``-`` and ``_``, at most 100."""
    if not _SLUG.fullmatch(value):
        raise CourseError(
            f"{what} {value!r} may hold only letters, digits, '-' and '_' (at most 100): "
            "it names a web address"
        )


@dataclass(frozen=True)
class Skill:
    """One skill; ``prerequisites`` are keys of skills to master first. A ``keep`` skill is one the
    student should not lose: it is examined every round and replayed, never taught."""

    key: str
    name: str
    description: str = ""
    prerequisites: tuple[str, ...] = ()
    keep: bool = False

    def __post_init__(self) -> None:
        _check_key(self.key, "skill key")
        _check_slug(self.key, "skill key")
        if not isinstance(self.name, str) or not self.name.strip():
            raise CourseError(f"skill {self.key}: name must be a non-empty string")
        if not isinstance(self.description, str):
            raise CourseError(f"skill {self.key}: description must be a string")
        if isinstance(self.prerequisites, str) or not isinstance(self.prerequisites, Iterable):
            raise CourseError(f"skill {self.key}: prerequisites must be a list of skill keys")
        prerequisites = tuple(self.prerequisites)
        for prerequisite in prerequisites:
            _check_key(prerequisite, f"skill {self.key}: prerequisite")
        if not isinstance(self.keep, bool):
            raise CourseError(f"skill {self.key}: keep must be true or false")
        if self.key in prerequisites:
            raise CourseError(f"skill {self.key} cannot be its own prerequisite")
        if len(set(prerequisites)) != len(prerequisites):
            raise CourseError(f"skill {self.key}: a prerequisite is listed twice")
        object.__setattr__(self, "prerequisites", prerequisites)


@dataclass(frozen=True)
class Exercise:
    """One item with a checkable gold ``answer``.

    - ``answer_type`` "number": ``answer`` parses as a number ("42", "-3", "3.5", "1,234");
    - "text": compared after normalisation; ``"17 R 3"`` is the division-with-remainder form;
    - "choice": ``answer`` is exactly one of ``options`` (two or more, all different).

    ``solution`` is an optional gold worked solution ending with "Answer: …". ``difficulty`` is
    a level from 1 within the skill. ``split`` defaults to "train"; see the exam rule above.
    ``phrasing`` names the wording the question is asked in; ``held_out`` marks a wording kept out
    of training (probe and exam only), so the exam can tell the skill from the template.
    """

    key: str
    skill: str
    prompt: str
    answer: str
    answer_type: AnswerType
    options: tuple[str, ...] = ()
    solution: str = ""
    difficulty: int = 1
    split: Split = "train"
    phrasing: str = ""
    held_out: bool = False

    def __post_init__(self) -> None:
        _check_key(self.key, "exercise key")
        where = f"exercise {self.key}"
        _check_key(self.skill, f"{where}: skill")
        for name in ("prompt", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise CourseError(f"{where}: {name} must be a non-empty string")
        if not isinstance(self.solution, str):
            raise CourseError(f"{where}: solution must be a string")
        if self.split not in SPLITS:
            raise CourseError(f"{where}: split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if not isinstance(self.phrasing, str) or not isinstance(self.held_out, bool):
            raise CourseError(f"{where}: phrasing must be a string and held_out true or false")
        if self.held_out and self.split == "train":
            raise CourseError(
                f"{where}: a held-out phrasing is for the probe and the exam, never the train split"
            )
        # bool is an int; a difficulty of True is a bug, not level 1.
        if isinstance(self.difficulty, bool) or not isinstance(self.difficulty, int) or self.difficulty < 1:
            raise CourseError(f"{where}: difficulty must be an integer >= 1, not {self.difficulty!r}")
        if isinstance(self.options, str) or not isinstance(self.options, Iterable):
            raise CourseError(f"{where}: options must be a list of strings")
        options = tuple(self.options)
        object.__setattr__(self, "options", options)
        if self.answer_type == "number":
            if parse_number(self.answer) is None:
                raise CourseError(f"{where}: answer {self.answer!r} is not a number")
        elif self.answer_type == "text":
            if not normalize_text(self.answer):
                raise CourseError(f"{where}: answer {self.answer!r} is empty once normalised")
        elif self.answer_type == "choice":
            self._check_options(where, options)
        else:
            raise CourseError(
                f"{where}: answer_type must be one of {', '.join(ANSWER_TYPES)}, not {self.answer_type!r}"
            )
        if options and self.answer_type != "choice":
            raise CourseError(f"{where}: options are only for answer_type 'choice'")

    def _check_options(self, where: str, options: tuple[str, ...]) -> None:
        if len(options) < 2:
            raise CourseError(f"{where}: a choice needs at least two options")
        if not all(isinstance(o, str) and o.strip() for o in options):
            raise CourseError(f"{where}: every option must be a non-empty string")
        # Options the grader cannot tell apart would make a right answer ungradable.
        if len({normalize_option(o) for o in options}) != len(options):
            raise CourseError(f"{where}: two options are the same once normalised")
        if self.answer not in options:
            raise CourseError(f"{where}: answer {self.answer!r} is not one of the options {list(options)!r}")


@dataclass(frozen=True)
class CourseIssue:
    """One cross-item problem: which list (``kind``), the item's ``index`` there, and why.

    ``missing`` names the key an issue refers to that does not exist, so an importer can drop
    the follow-on error when that key's own line was already reported as broken.
    """

    kind: Literal["skill", "exercise"]
    index: int
    message: str
    missing: str | None = None


def course_issues(skills: Sequence[Skill], exercises: Sequence[Exercise]) -> list[CourseIssue]:
    """Every rule that spans items, in the order of the items it is reported at."""
    issues: list[CourseIssue] = []
    first_skill: dict[str, int] = {}
    for i, skill in enumerate(skills):
        if skill.key in first_skill:
            issues.append(CourseIssue("skill", i, f"duplicate skill key {skill.key!r}"))
        else:
            first_skill[skill.key] = i
    for i, skill in enumerate(skills):
        for prerequisite in skill.prerequisites:
            if prerequisite not in first_skill:
                issues.append(
                    CourseIssue(
                        "skill",
                        i,
                        f"skill {skill.key}: unknown prerequisite {prerequisite!r}",
                        prerequisite,
                    )
                )
    for cycle in _cycles(skills):
        index = min(first_skill[key] for key in cycle[:-1])
        issues.append(CourseIssue("skill", index, f"prerequisite cycle: {' -> '.join(cycle)}"))
    held_out_of: dict[str, tuple[bool, str]] = {}
    for i, exercise in enumerate(exercises):
        if not exercise.phrasing:
            continue
        first = held_out_of.setdefault(exercise.phrasing, (exercise.held_out, exercise.key))
        if first[0] != exercise.held_out:
            issues.append(
                CourseIssue(
                    "exercise",
                    i,
                    f"exercise {exercise.key}: phrasing {exercise.phrasing!r} is held out in {first[1]} "
                    f"but not here (or the other way round)",
                )
            )
    seen_exercise: set[str] = set()
    seen_prompt: dict[tuple[str, tuple[str, ...]], Exercise] = {}
    for i, exercise in enumerate(exercises):
        if exercise.key in seen_exercise:
            issues.append(CourseIssue("exercise", i, f"duplicate exercise key {exercise.key!r}"))
        seen_exercise.add(exercise.key)
        if exercise.skill not in first_skill:
            issues.append(
                CourseIssue(
                    "exercise",
                    i,
                    f"exercise {exercise.key}: unknown skill {exercise.skill!r}",
                    exercise.skill,
                )
            )
        # The same question in two splits leaks it (train/probe -> exam) or blurs a measure.
        same = seen_prompt.setdefault(_prompt_identity(exercise), exercise)
        if same.split != exercise.split:
            issues.append(
                CourseIssue(
                    "exercise",
                    i,
                    f"exercise {exercise.key}: same prompt as {same.key} but in split "
                    f"{exercise.split!r}, not {same.split!r}",
                )
            )
    return sorted(issues, key=lambda issue: (issue.kind != "skill", issue.index))


def _prompt_identity(exercise: Exercise) -> tuple[str, tuple[str, ...]]:
    return " ".join(exercise.prompt.casefold().split()), tuple(normalize_option(o) for o in exercise.options)


def _cycles(skills: Sequence[Skill]) -> list[list[str]]:
    """Each prerequisite cycle once, as a closed path ``[a, b, a]``, found by depth-first search."""
    graph = {s.key: list(s.prerequisites) for s in skills}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(key: str, path: list[str]) -> None:
        state[key] = 1
        path.append(key)
        for nxt in graph.get(key, []):
            if nxt not in graph:
                continue  # unknown prerequisite: reported separately
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle)
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[key] = 2

    for skill in skills:
        if skill.key not in state:
            visit(skill.key, [])
    return cycles


@dataclass(frozen=True)
class Course:
    """A validated course; building one with any broken rule raises :class:`CourseError`."""

    key: str
    name: str
    skills: tuple[Skill, ...]
    exercises: tuple[Exercise, ...] = field(default=())
    expert: str = ""  # the name of the course's expert (tutor.core.courses.expert), "" for none

    def __post_init__(self) -> None:
        _check_key(self.key, "course key")
        _check_slug(self.key, "course key")
        if not isinstance(self.name, str) or not self.name.strip():
            raise CourseError(f"course {self.key}: name must be a non-empty string")
        object.__setattr__(self, "skills", tuple(self.skills))
        object.__setattr__(self, "exercises", tuple(self.exercises))
        issues = course_issues(self.skills, self.exercises)
        if issues:
            raise CourseError(f"course {self.key}: " + "; ".join(issue.message for issue in issues))

    @property
    def held_out_phrasings(self) -> frozenset[str]:
        """The phrasings kept out of training."""
        return frozenset(e.phrasing for e in self.exercises if e.held_out and e.phrasing)

    @property
    def taught_skills(self) -> tuple[Skill, ...]:
        """The skills the course teaches (every one but the keep skills)."""
        return tuple(s for s in self.skills if not s.keep)

    @property
    def keep_skills(self) -> tuple[Skill, ...]:
        return tuple(s for s in self.skills if s.keep)

    def skill(self, key: str) -> Skill:
        for skill in self.skills:
            if skill.key == key:
                return skill
        raise KeyError(f"course {self.key} has no skill {key!r}")

    def split(self, name: str) -> tuple[Exercise, ...]:
        """Exercises of one split, in course order."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {name!r}")
        return tuple(e for e in self.exercises if e.split == name)

    def exercises_for(self, skill: str, split: str | None = None) -> tuple[Exercise, ...]:
        pool = self.exercises if split is None else self.split(split)
        return tuple(e for e in pool if e.skill == skill)

    def max_difficulty(self, skill: str) -> int:
        """Highest difficulty level among the skill's exercises (1 when it has none)."""
        return max((e.difficulty for e in self.exercises if e.skill == skill), default=1)

    def skills_in_order(self) -> tuple[Skill, ...]:
        """Skills with every prerequisite before its dependants; ties keep declaration order."""
        done: set[str] = set()
        ordered: list[Skill] = []
        remaining = list(self.skills)
        while remaining:
            # The graph is acyclic (validated), so each pass places at least one skill.
            ready = next(s for s in remaining if all(p in done for p in s.prerequisites))
            ordered.append(ready)
            done.add(ready.key)
            remaining.remove(ready)
        return tuple(ordered)


def training_safe(exercises: Iterable[Exercise]) -> tuple[Exercise, ...]:
    """Return ``exercises`` unchanged, or raise :class:`ExamLeakError` if any is an exam item or is
    asked in a held-out phrasing.

    Call it wherever items feed training data, teacher explanations, feedback or generated
    items. It raises rather than filters so a leak is noticed and fixed at its source.
    """
    items = tuple(exercises)
    for what, leaked in (
        ("exam items", [e.key for e in items if e.split == "exam"]),
        ("items in a held-out phrasing", [e.key for e in items if e.held_out]),
    ):
        if leaked:
            shown = ", ".join(leaked[:5]) + (f" and {len(leaked) - 5} more" if len(leaked) > 5 else "")
            raise ExamLeakError(f"{what} may not be used for training or explanations: {shown}")
    return items

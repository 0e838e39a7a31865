"""Scripted models and a small course for the teaching-loop tests (no tests here).

A scripted model answers from a function of (kind of prompt, question, adapter) and records every
batch it was asked, so tests can count teacher calls per kind and check what the teacher saw.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from training.core.llm.base import Generation, GenerationParams, UnsupportedOperation
from tutor.core.courses.course import Course, Skill
from tutor.core.courses.packs import load_pack, solve
from tutor.core.runs.general_probe import GENERAL_PROBE
from tutor.core.runs.prompts import ANSWER_LINE, question_text
from tutor.core.runs.state import RunConfig, RunState
from tutor.core.runs.steps import Context

WRONG = "999999"
# The loop's rules before the expert, the keep set and the acceptance check: tests of other mechanics
# (resume, replay, ratings, probes) run under them; test_transfer.py tests the new rules.
LEGACY_RULES = {
    "expert": False,
    "acceptance": "always",
    "schedule": "continue",
    "keep_share": 0.0,
    "explain_samples": 1,
    "teacher_generate_k": 1_000,
    "exam_every_round": True,
}
# A general-probe question as the student prompt shows it (lettered options) or as the cloze
# scoring asks it (the bare question).
GENERAL = {question_text(e): e.answer for e in GENERAL_PROBE} | {e.prompt: e.answer for e in GENERAL_PROBE}


def known(question: str) -> str:
    """The gold answer of a pack question or of a general-probe question."""
    return GENERAL[question] if question in GENERAL else solve(question)


def is_general(question: str) -> bool:
    return question in GENERAL


def kind_of(conversation: list[dict[str, str]]) -> str:
    content = conversation[-1]["content"]
    if "answered this question wrongly" in content:
        return "explain"
    if "new exercises of the same kind" in content:
        return "generate"
    if "Now answer this question." in content:
        return "explained_answer"
    return "answer"


def question_of(conversation: list[dict[str, str]]) -> str:
    content = conversation[-1]["content"]
    if kind_of(conversation) in ("explain", "generate"):
        return re.search(r"^Question: (.*)$", content, re.MULTILINE).group(1)
    content = content.split("Now answer this question.\n", 1)[-1]
    return content.replace(f"\n{ANSWER_LINE}", "").strip()


@dataclass
class Call:
    kinds: Counter
    conversations: list
    adapter: str | None
    params: GenerationParams | None


@dataclass
class ScriptedLLM:
    """``reply(kind, question, conversation, adapter) -> text``."""

    name: str
    reply: Callable[..., str]
    calls: list[Call] = field(default_factory=list)
    loaded: list[tuple[str, str]] = field(default_factory=list)
    # ``score(kind, question, reply, adapter) -> log-likelihood``; None: it cannot score (a server).
    score: Callable[..., float] | None = None
    scored: list[tuple[str, str, str | None]] = field(default_factory=list)  # (question, reply, adapter)

    def generate(self, conversations, params=None, *, adapter=None):
        conversations = list(conversations)
        assert conversations, "no empty batches"
        self.calls.append(Call(Counter(kind_of(c) for c in conversations), conversations, adapter, params))
        return [Generation(self.reply(kind_of(c), question_of(c), c, adapter), 0, 0) for c in conversations]

    def reply_loglikelihood(self, requests, *, adapter=None):
        if self.score is None:
            raise UnsupportedOperation(self.name, "this scripted model cannot score log-likelihoods")
        requests = list(requests)
        self.scored.extend((question_of(c), reply, adapter) for c, reply in requests)
        return [self.score(kind_of(c), question_of(c), reply, adapter) for c, reply in requests]

    def load_adapter(self, name: str, path: str) -> None:
        self.loaded.append((name, path))

    def count(self, kind: str) -> int:
        """Calls (batches) that held at least one conversation of ``kind``."""
        return sum(1 for call in self.calls if call.kinds[kind])

    def seen(self, kind: str) -> list[list[dict[str, str]]]:
        return [c for call in self.calls for c in call.conversations if kind_of(c) == kind]


def general_score(knows: Callable[[str | None], bool] = lambda adapter: True):
    """A ``score`` for the general probe: the gold option likeliest where ``knows(adapter)``, else the
    first wrong one (course questions score alike: they are never scored in these tests)."""

    def score(kind, question, reply, adapter):
        if not is_general(question):
            return -1.0
        return (
            (0.0 if reply == known(question) else -1.0)
            if knows(adapter)
            else (-1.0 if reply == known(question) else 0.0)
        )

    return score


def student_reply(knows: Callable[[str, str | None], bool] = lambda q, adapter: False, gold=known):
    """Right where ``knows(question, adapter)``, or with a helpful explanation in context."""

    def reply(kind, question, conversation, adapter):
        helped = kind == "explained_answer" and "UNHELPFUL" not in conversation[-1]["content"]
        right = knows(question, adapter) or helped
        return f"Let me think.\nAnswer: {gold(question) if right else WRONG}"

    return reply


def teacher_reply(
    *, wrong_on: Callable[[str], bool] = lambda q: False, generate=None, gold=known, extra: str = ""
):
    """Correct explanations (except where ``wrong_on``), exam answers by ``gold``, items by ``generate``."""

    def reply(kind, question, conversation, adapter):
        if kind == "explain":
            answer = WRONG if wrong_on(question) else gold(question)
            return f"Mistake: you guessed.\nSolution: work it out step by step.{extra}\nAnswer: {answer}"
        if kind == "generate":
            return generate(question) if generate else ""
        return f"Answer: {gold(question)}"

    return reply


def add_items(question: str) -> str:
    """Two new addition items for 'What is a + b?': the first right, the second with a wrong answer."""
    a, b = map(int, re.findall(r"\d+", question)[:2])
    return (
        f"Question: What is {a + 50} + {b}?\nSolution: add the columns.\nAnswer: {a + 50 + b}\n---\n"
        f"Question: What is {a + 60} + {b}?\nSolution: add the columns.\nAnswer: {a + 60 + b + 1}\n"
    )


def mini_course(train: int = 4, probe: int = 3, exam: int = 3) -> Course:
    """add_1d -> add_2d, and mul_1d without prerequisites: two skills open in round 0."""
    pack = load_pack("arithmetic", per_skill_per_split={"train": train, "probe": probe, "exam": exam})
    skills = (
        Skill("add_1d", "Add one-digit numbers"),
        Skill("add_2d", "Add two-digit numbers", "", ("add_1d",)),
        Skill("mul_1d", "Multiply by a one-digit number"),
    )
    keys = {s.key for s in skills}
    return Course(
        key="mini",
        name="Mini arithmetic",
        skills=skills,
        exercises=tuple(e for e in pack.exercises if e.skill in keys),
    )


def context(course: Course, teacher, student, **settings) -> Context:
    config = RunConfig(
        **{
            **LEGACY_RULES,
            "rounds": 1,
            "plan_budget": 4,
            "explain_budget": 4,
            "generate_budget": 2,
            "generate_k": 2,
            "siblings": 2,
            **settings,
        }
    )
    state = RunState(config=config, course=course.key, teacher=teacher.name, student=student.name)
    return Context(
        course=course,
        teacher=teacher,
        student=student,
        config=config,
        state=state,
        train_fn=lambda records, index, parent, **_: f"/adapters/round{index}",
    )

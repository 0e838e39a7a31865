"""A small course and scripted teachers for the learner-side tests."""

from __future__ import annotations

from tutor.core.courses import course as core
from tutor.core.courses.packs import solution_of
from tutor.courses import services

SKILLS = [
    core.Skill("add", "Adding", "add two small numbers"),
    core.Skill("capitals", "Capitals", "name capital cities"),
]
EXERCISES = [
    core.Exercise("add-1", "add", "What is 2 + 3?", "5", "number", solution="2 + 3 = 5.\nAnswer: 5"),
    core.Exercise(
        "add-2", "add", "What is 4 + 4?", "8", "number", solution="4 + 4 = 8.\nAnswer: 8", difficulty=2
    ),
    core.Exercise(
        "add-3", "add", "What is 6 + 1?", "7", "number", solution="6 + 1 = 7.\nAnswer: 7", difficulty=3
    ),
    core.Exercise("add-exam", "add", "What is 1 + 1?", "2", "number", split="exam"),
    core.Exercise(
        "cap-1",
        "capitals",
        "What is the capital of France?",
        "Paris",
        "text",
        solution="France's capital is Paris.\nAnswer: Paris",
    ),
]


def make_course(key: str = "tiny"):
    return services.course_save(
        course=core.Course(key=key, name=f"Tiny {key}", skills=SKILLS, exercises=EXERCISES), source="test"
    )


def make_pack_course(key: str = "sums"):
    """Two-digit sums checked by the arithmetic pack's expert (solutions that state the sum first)."""

    def item(name: str, a: int, b: int, **extra) -> core.Exercise:
        return core.Exercise(
            name,
            "add_2d",
            f"What is {a} + {b}?",
            str(a + b),
            "number",
            solution=solution_of("+", a, b),
            **extra,
        )

    exercises = [
        item("sum-1", 47, 38),
        item("sum-2", 26, 17, difficulty=2),
        item("sum-exam", 55, 29, split="exam"),
    ]
    skills = [core.Skill("add_2d", "Add two-digit numbers", "column addition with carries")]
    return services.course_save(
        course=core.Course(key=key, name="Sums", skills=skills, exercises=exercises, expert="arithmetic"),
        source="test",
    )


def make_bare_course(key: str = "bare"):
    """A course without an expert: gold answers, no worked solutions."""
    skills = [core.Skill("add", "Adding", "add two small numbers")]
    exercises = [
        core.Exercise("b-1", "add", "What is 2 + 3?", "5", "number"),
        core.Exercise("b-2", "add", "What is 4 + 4?", "8", "number"),
    ]
    return services.course_save(
        course=core.Course(key=key, name="Bare", skills=skills, exercises=exercises), source="test"
    )


class ScriptedLLM:
    """Stands in for the teacher: ``generate`` returns ``decision`` (or raises ``error``), ``stream``
    yields ``pieces`` (then raises ``stream_error``). Every call is recorded in ``calls``."""

    def __init__(
        self,
        pieces=("Hello", " there"),
        decision="Error type: slip\nStrategy: hint\nIntention: check the sum",
        error=None,
        stream_error=None,
        gate=None,
    ):
        self.pieces, self.decision, self.error, self.stream_error = (
            list(pieces),
            decision,
            error,
            stream_error,
        )
        self.gate = gate  # a threading.Event the stream waits on after its first piece
        self.calls: list[tuple[str, list]] = []

    def generate(self, conversations, params=None, *, adapter=None):
        from training.core.llm import Generation

        self.calls.append(("generate", conversations[0]))
        if self.error:
            raise self.error
        return [Generation(self.decision, 1, 1)]

    def stream(self, conversation, params=None, *, adapter=None):
        self.calls.append(("stream", conversation))
        if self.error:
            raise self.error
        for i, piece in enumerate(self.pieces):
            if self.gate is not None and i > 0:
                self.gate.wait(5)
            yield piece
        if self.stream_error:
            raise self.stream_error

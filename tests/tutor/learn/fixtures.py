"""A small course and scripted teachers for the learner-side tests."""

from __future__ import annotations

from tutor.core.courses import course as core
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

"""The teaching loop in plain Python: diagnose, plan, explain, score, generate, build data, train,
re-examine; see :mod:`.steps` for the rules and :mod:`.loop` for running and resuming a run."""

from tutor.core.runs.loop import run_teaching
from tutor.core.runs.state import (
    STEPS,
    Answer,
    Explanation,
    GeneratedItem,
    RoundState,
    RunConfig,
    RunState,
    TeachingError,
)
from tutor.core.runs.steps import teacher_hacking_warning

__all__ = [
    "STEPS",
    "Answer",
    "Explanation",
    "GeneratedItem",
    "RoundState",
    "RunConfig",
    "RunState",
    "TeachingError",
    "run_teaching",
    "teacher_hacking_warning",
]

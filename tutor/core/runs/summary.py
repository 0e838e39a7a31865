"""One flat summary per round of a run's state, for tables, pages and the ``Round`` rows."""

from __future__ import annotations

from typing import Any

from tutor.core.runs.state import RunState

# Exam keys round_summaries maps to a key of its own, or leaves out; every other exam key (the
# forgetting probes, ...) passes through, less its "answers": they are bulky, the state file keeps them.
EXAM_MAPPED = (
    "per_skill",
    "base_per_skill",
    "accuracy",
    "base_accuracy",
    "vs_base",
    "vs_previous",
    "agreement",
    "teacher_accuracy",
    "answers",
)


def _rate(passed: int, tried: int) -> float | None:
    return round(passed / tried, 4) if tried else None


def _without_answers(value: Any) -> Any:
    return {k: v for k, v in value.items() if k != "answers"} if isinstance(value, dict) else value


def round_summaries(state: RunState) -> list[dict[str, Any]]:
    """Per round: probe accuracy and exam accuracy per skill (with the base), warnings, progress,
    and the exam's further measurements (e.g. ``forgetting``) under their own keys."""
    return [
        {
            **{k: _without_answers(v) for k, v in r.exam.items() if k not in EXAM_MAPPED},
            "round": r.index,
            "probe": r.probe_accuracy,
            "exam": r.exam.get("per_skill", {}),
            "base": r.exam.get("base_per_skill", {}),
            "accuracy": r.exam.get("accuracy"),
            "base_accuracy": r.exam.get("base_accuracy"),
            "vs_base": r.exam.get("vs_base"),
            "vs_previous": r.exam.get("vs_previous"),
            "agreement": r.exam.get("agreement"),
            "teacher_accuracy": r.exam.get("teacher_accuracy"),
            "explained": len(r.explanations),
            "dropped_explanations": r.dropped_explanations,
            "helped": sum(x.helped for x in r.explanations),
            "generated_kept": sum(g.kept for g in r.generated),
            "sft_records": len(r.sft_records),
            "train_note": r.train.get("note", ""),
            # Who wrote what: the teacher model or the course's expert, and how often the model passed.
            "by_model": {
                "explanations": sum(x.source == "model" and x.passed_gate for x in r.explanations),
                "generated": sum(g.source == "model" and g.kept for g in r.generated),
            },
            "by_expert": {
                "explanations": sum(x.source == "expert" for x in r.explanations),
                "generated": sum(g.source == "expert" for g in r.generated),
            },
            "pass_rate": {
                "explain": _rate(
                    sum(x.candidates_passed for x in r.explanations),
                    sum(x.candidates for x in r.explanations),
                ),
                "generate": _rate(
                    sum(g.kept for g in r.generated if g.source == "model"),
                    sum(g.source == "model" for g in r.generated),
                ),
            },
            "keep_records": r.keep_records,
            "tries": [{k: v for k, v in t.items() if k != "probe"} for t in r.tries],
            "rolled_back": bool(r.train.get("rolled_back")),
            "adapter_path": r.train.get("adapter_path"),
            "done_steps": list(r.done_steps),
            "warnings": r.warnings,
        }
        for r in state.rounds
    ]

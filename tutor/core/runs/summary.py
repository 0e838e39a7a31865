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
            "adapter_path": r.train.get("adapter_path"),
            "done_steps": list(r.done_steps),
            "warnings": r.warnings,
        }
        for r in state.rounds
    ]

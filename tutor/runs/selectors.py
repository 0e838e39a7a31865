"""Reads of teaching runs: the state file, the current adapter, what people approved."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from training.models import Adapter
from tutor.core.courses.course import Course
from tutor.core.courses.expert import PACK_EXPERTS, GoldSolutionsExpert, expert_summary
from tutor.core.runs.state import Explanation, RunState
from tutor.core.runs.steps import trains_on_approval
from tutor.models import Exercise, RunExplanation, TeachingRun


def teaching_run_state_path(run: TeachingRun) -> Path:
    return Path(settings.TEACHLOOP_DATA_DIR) / "runs" / str(run.pk) / "state.json"


def teaching_run_state_load(run: TeachingRun) -> RunState | None:
    path = teaching_run_state_path(run)
    return RunState.load(path) if path.exists() else None


def run_explanation_to_core(row: RunExplanation) -> Explanation:
    return Explanation(
        id=row.key,
        round=row.round,
        item=row.item,
        skill=row.skill,
        split=row.split,
        student_answer=row.student_answer,
        text=row.text,
        teacher_answer=row.teacher_answer or None,
        passed_gate=row.passed_gate,
        gate_reason=row.gate_reason,
        quotes_exam=row.quotes_exam,
        score=row.score,
        approved=row.rating,
        edited=row.edited_text or None,
    )


def teaching_run_latest_adapter(*, run: TeachingRun) -> Adapter | None:
    """The adapter the run's student has now (the last trained round's), None while it is the base."""
    state = teaching_run_state_load(run)
    path = (state.adapter_path if state is not None else None) or run.adapter_path
    return Adapter.objects.filter(base_model=run.student, path=path).first() if path else None


def teaching_run_learnable_approvals(*, run: TeachingRun) -> int:
    """How many explanations "fine-tune now" would train on, by the rule of
    :func:`~tutor.core.runs.steps.trains_on_approval` (runs made before explanations were limited to
    practice items have approved probe items too, which never train)."""
    return sum(
        trains_on_approval(run_explanation_to_core(row)) for row in run.explanations.filter(rating=True)
    )


def teaching_run_expert_note(run: TeachingRun) -> str:
    """What the run can verify: the course's expert, its gold solutions, or neither (for the run page)."""
    if not run.config.get("expert", False):
        return "The teacher model alone: its explanations are checked by their final answer only."
    if run.course.expert in PACK_EXPERTS:
        return expert_summary(PACK_EXPERTS[run.course.expert])
    if Exercise.objects.filter(skill__course=run.course).exclude(solution="").exists():
        return expert_summary(GoldSolutionsExpert(Course(key="c", name="c", skills=())))
    return expert_summary(None)

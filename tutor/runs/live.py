"""A teaching run's live page: what its fragments show, rendered, and pushed to its WebSocket group.

Every change to a run is pushed to the group ``tutor.run.<id>`` as HTML fragments (escaped by their
templates) that htmx's ws extension swaps in by id; a broken channel layer never stops the run.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.template.loader import render_to_string

from training.models import Adapter, TrainingJob
from tutor.core.runs.state import STEPS
from tutor.models import Round, TeachingRun
from tutor.runs.selectors import teaching_run_expert_note

logger = logging.getLogger(__name__)


def teaching_run_group(run_id: int) -> str:
    return f"tutor.run.{run_id}"


def teaching_run_context(run: TeachingRun) -> dict[str, Any]:
    """What the run's live fragments show: the run, its step timeline, charts, jobs and adapter."""
    skills = list(run.course.skills.values_list("key", flat=True))
    keep = set(run.course.skills.filter(keep=True).values_list("key", flat=True))
    rounds = list(run.rounds.select_related("training_job"))  # a fresh query: a cached prefetch may be stale
    by_index = {r.index: r for r in rounds}
    timeline = []
    for index in range(run.config.get("rounds", 0)):
        row = by_index.get(index)
        done = row.done_steps if row else []
        current = run.status == TeachingRun.Status.RUNNING and index == run.current_round
        timeline.append(
            {
                "round": index,
                "result": row if row and row.done_steps else None,
                "job": row.training_job if row else None,
                "steps": [
                    {
                        "name": step,
                        "state": "done"
                        if step in done
                        else "current"
                        if current and step == run.current_step
                        else "todo",
                    }
                    for step in STEPS
                ],
                "skills": [_skill_row(row, s, s in keep) for s in skills] if row and row.probe else [],
            }
        )
    summarised = [r for r in rounds if r.done_steps]  # not a row made only to hold a training job
    chart = {
        "skills": skills,
        "rounds": [r.index + 1 for r in summarised],
        "probe": {s: [r.probe.get(s) for r in summarised] for s in skills},
        "exam": [r.accuracy for r in summarised],
        "base": [r.base_accuracy for r in summarised],
    }
    adapter = Adapter.objects.filter(path=run.adapter_path).first() if run.adapter_path else None
    feedback = {j.pk: j for j in TrainingJob.objects.filter(pk__in=run.feedback_jobs)}
    return {
        "run": run,
        "expert_note": teaching_run_expert_note(run),
        "skills": skills,
        "timeline": timeline,
        "chart_json": json.dumps(chart),
        "adapter": adapter,
        "feedback_jobs": [feedback[pk] for pk in run.feedback_jobs if pk in feedback],
    }


def teaching_run_fragments(run: TeachingRun) -> dict[str, str]:
    """The run page's live part ("state") and the run's row in the list ("row"), swapped in by id
    (htmx ws); each socket is sent the one its page shows."""
    ctx = teaching_run_context(run)
    return {
        "state": render_to_string("tutor/runs/partials/run_state.html", ctx),
        "row": render_to_string("tutor/runs/partials/run_row.html", ctx),
    }


def teaching_run_broadcast(run: TeachingRun) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            teaching_run_group(run.pk), {"type": "run.update", "fragments": teaching_run_fragments(run)}
        )
    except Exception:  # a broken channel layer must never stop the run itself
        logger.exception("could not broadcast run %s update", run.pk)


def _skill_row(row: Round, skill: str, keep: bool) -> dict[str, Any]:
    """One skill of a round: probe, then the exam on training and on held-out phrasings, with the base's."""
    extra = row.extra
    return {
        "skill": skill,
        "keep": keep,
        "probe": row.probe.get(skill),
        "exam": extra.get("per_skill_trained_phrasing", row.exam).get(skill),
        "held_out": extra.get("per_skill_held_out", {}).get(skill),
        "base": extra.get("base_per_skill_trained_phrasing", row.base).get(skill),
        "base_held_out": extra.get("base_per_skill_held_out", {}).get(skill),
    }

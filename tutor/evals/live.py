"""An evaluation's live page: what its fragments show, rendered, and pushed to its WebSocket group.

Every change is pushed to the group ``tutor.evaluation.<id>`` as HTML fragments (escaped by their
templates) that htmx's ws extension swaps in by id; a broken channel layer never stops the work.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.template.loader import render_to_string

from tutor.models import Evaluation

logger = logging.getLogger(__name__)

MAX_CHANGED_SHOWN = 20  # items per adapter whose answer turned right or wrong


def evaluation_group(evaluation_id: int) -> str:
    return f"tutor.evaluation.{evaluation_id}"


def evaluation_context(evaluation: Evaluation) -> dict[str, Any]:
    """The table (a row per skill, a cell per column with its interval and mark against the base),
    the bars of the chart, and the items each adapter changed."""
    results = evaluation.results or {}
    labels = results.get("labels", [c["label"] for c in evaluation.columns])
    # Percentages for the page, on copies: the stored results stay as the worker wrote them.
    rows = [{**row, "cells": [_shown(cell) for cell in row["cells"]]} for row in results.get("rows", [])]
    return {
        "evaluation": evaluation,
        "labels": labels,
        "rows": rows,
        "changed": _changed(evaluation, results),
    }


def _shown(cell: dict[str, Any]) -> dict[str, Any]:
    return {
        **cell,
        "pct": round(100 * cell["accuracy"], 1),
        "low_pct": round(100 * cell["low"], 1),
        "high_pct": round(100 * cell["high"], 1),
        "spread_pct": round(100 * (cell["high"] - cell["low"]), 1),
    }


def _changed(evaluation: Evaluation, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per adapter column: the items it got wrong that the base got right (lost) and the other way
    round (gained), with both answers, at most ``MAX_CHANGED_SHOWN`` of each."""
    answers = results.get("answers", {})
    columns = evaluation.columns
    if not answers or len(columns) < 2 or columns[0]["key"] not in answers:
        return []
    base = answers[columns[0]["key"]]
    prompts = {item["key"]: item for item in evaluation.items}
    out = []
    for column in columns[1:]:
        mine = answers.get(column["key"], {})
        lost, gained = [], []
        for key, item in prompts.items():
            if key not in mine or key not in base or mine[key]["correct"] == base[key]["correct"]:
                continue
            entry = {
                "skill": item["skill"],
                "prompt": item["prompt"],
                "gold": item["answer"],
                "base": base[key]["text"],
                "adapter": mine[key]["text"],
            }
            (gained if mine[key]["correct"] else lost).append(entry)
        out.append(
            {
                "label": column["label"],
                "lost": lost[:MAX_CHANGED_SHOWN],
                "gained": gained[:MAX_CHANGED_SHOWN],
                "n_lost": len(lost),
                "n_gained": len(gained),
            }
        )
    return out


def evaluation_fragments(evaluation: Evaluation) -> dict[str, str]:
    """The evaluation page's live part ("state") and its row in the list ("row")."""
    ctx = evaluation_context(evaluation)
    return {
        "state": render_to_string("tutor/evals/partials/evaluation_state.html", ctx),
        "row": render_to_string("tutor/evals/partials/evaluation_row.html", ctx),
    }


def evaluation_broadcast(evaluation: Evaluation) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            evaluation_group(evaluation.pk),
            {"type": "evaluation.update", "fragments": evaluation_fragments(evaluation)},
        )
    except Exception:  # a broken channel layer must never stop the evaluation itself
        logger.exception("could not broadcast evaluation %s update", evaluation.pk)

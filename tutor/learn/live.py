"""A tutoring session's live page: tutor messages rendered (escaped) and pushed to its WebSocket group
``tutor.session.<id>`` once the transaction commits."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string

from tutor.models import TutorMessage


def tutoring_session_group(session_id: int) -> str:
    return f"tutor.session.{session_id}"


def tutor_message_announce(message: TutorMessage, *, new: bool = False, pending: bool = False) -> None:
    """After commit: show the message in the session's open pages, and wake a generator."""
    session_id, message_id = message.session_id, message.pk

    def send() -> None:
        layer = get_channel_layer()
        group = tutoring_session_group(session_id)
        html = tutor_message_html(message_id=message_id, append=new)
        async_to_sync(layer.group_send)(group, {"type": "tutor.html", "html": html})
        if pending:
            async_to_sync(layer.group_send)(group, {"type": "tutor.pending"})

    transaction.on_commit(send)


def tutor_message_html(*, message_id: int, append: bool = False, readonly: bool = False) -> str:
    """The message's fragment (escaped); ``append`` wraps it to be added to the session's list."""
    message = TutorMessage.objects.select_related("alternative_to").get(pk=message_id)
    return render_to_string(
        "tutor/learn/partials/message.html#" + ("append" if append else "oob"),
        tutor_message_context(message=message, readonly=readonly),
    )


def tutor_message_progress_html(*, message_id: int, chars: int) -> str:
    """While the tutor writes: how much, never what (a reply is shown only once it passed its checks)."""
    return render_to_string(
        "tutor/learn/partials/message.html#progress", {"message_id": message_id, "chars": chars}
    )


def tutor_message_context(*, message: TutorMessage, readonly: bool = False) -> dict[str, Any]:
    """``pair``: the learner may choose between two explanations, only when both are the model's and
    passed their checks. ``show_decision`` (instructors' read-only views): the decision on a mistake
    and why a reply failed its checks, with the model's failed text; never on the learner's page."""
    ratings = {f.kind: f.value for f in message.feedback.all()}
    partner = message.partner
    checked = TutorMessage.Status.DONE, TutorMessage.Source.MODEL
    pair = (
        partner is not None
        and (message.status, message.source) == checked
        and (partner.status, partner.source) == checked
    )
    label = message.get_kind_display().capitalize()
    if message.source in (TutorMessage.Source.EXPERT, TutorMessage.Source.NOTE) and message.label:
        label = message.label
    elif partner is not None:
        label = f"Explanation {'B' if message.alternative_to_id else 'A'}"
    example = (message.checked_against or {}).get("example") or {}
    return {
        "m": message,
        "ratings": ratings,
        "pair": pair,
        "label": label,
        "example": example.get("prompt", "") if message.kind == TutorMessage.Kind.EXPLANATION else "",
        "readonly": readonly,
        "show_decision": readonly,
    }

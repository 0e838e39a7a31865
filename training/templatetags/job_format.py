"""Template filters of the training pages."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def when(value: object) -> str:
    """An ISO timestamp (a job event's ``at``) as local "YYYY-MM-DD HH:MM:SS"; anything else as it is."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S")

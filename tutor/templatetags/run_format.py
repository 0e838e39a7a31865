"""Number formats of the teaching-run pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """0.4167 -> "42%"; None -> "—"."""
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def signed(value: float | None) -> str:
    """0.3333 -> "+0.33"; None -> "—"."""
    return "—" if value is None else f"{value:+.2f}"


@register.filter
def points(value: float | None) -> str:
    """An accuracy difference in percentage points: 0.25 -> "+25 pts"."""
    return "—" if value is None else f"{value * 100:+.0f} pts"

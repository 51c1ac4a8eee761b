"""Template filters of the evidence pages: UTC times as plain text (a printed report cannot
show the reader's time zone on hover) and freshness figures."""

from datetime import UTC, date, datetime

from django import template

from replication.evidence.freshness import format_objective, format_target

register = template.Library()


@register.filter
def utc(value: datetime | None, style: str = "minute") -> str:
    """``2026-11-12 10:04 UTC`` (``style="day"``: ``2026-11-12``)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        return f"{value:%Y-%m-%d}" if style == "day" else f"{value:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, date):
        return f"{value:%Y-%m-%d}"
    return str(value)


@register.filter
def objective(seconds: int | None) -> str:
    return "" if seconds is None else format_objective(int(seconds))


@register.filter
def target(value) -> str:
    return "" if value is None else format_target(value)


@register.filter
def burn(value: float | None) -> str:
    """A burn rate: ``0.4x``; a dash when there is nothing to burn."""
    if value is None:
        return "—"
    return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


_WORDS = {
    "in_sync": "in sync",
    "out_of_sync": "out of sync",
    "unproven": "unproven",
    "failed": "failed",
    "none": "no run",
    "not_counted": "not counted (the pair did not exist yet, or the day is to come)",
}


@register.filter
def verdict_words(value: str) -> str:
    return _WORDS.get(str(value), str(value))

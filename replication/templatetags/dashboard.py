"""Template filters for the dashboard: times, durations, counts, state badges."""

from datetime import UTC, datetime, timedelta

from django import template
from django.utils.html import format_html

from replication.dashboard import humanize
from replication.status import health

register = template.Library()


@register.filter
def utctime(value: datetime | None, style: str = "datetime"):
    """A ``<time>`` in UTC with UTC on hover; static/dashboard/localtime.js shows it in the
    viewer's time zone."""
    if value is None:
        return ""
    value = value.astimezone(UTC)
    iso = value.isoformat().replace("+00:00", "Z")
    full = f"{value:%Y-%m-%d %H:%M:%S} UTC"
    shown = f"{value:%Y-%m-%d %H:%M} UTC"
    return format_html(
        '<time datetime="{}" title="{}" data-style="{}">{}</time>', iso, full, style, shown
    )


@register.filter
def duration(value: timedelta | float | None) -> str:
    return humanize.duration(value)


@register.filter
def behind(value: timedelta | None) -> str:
    """How far behind the backup is, worded exactly as health reasons, alerts and badges
    word it ("2 h 5 min", "22 min"), so a page and its reason never disagree."""
    return "" if value is None else health.duration(value)


@register.filter
def count(value: int | None) -> str:
    return humanize.count(value)


@register.filter
def percent(part: int | None, whole: int | None) -> int:
    if not whole:
        return 0
    return max(0, min(100, round(100 * (part or 0) / whole)))

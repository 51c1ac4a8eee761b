"""Template filters for the dashboard: times, durations, counts, state badges."""

from datetime import UTC, datetime, timedelta

from django import template
from django.utils.html import format_html

from replication.dashboard import humanize
from replication.reconcile import wording

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
def count(value: int | None) -> str:
    return humanize.count(value)


@register.filter
def percent(part: int | None, whole: int | None) -> int:
    if not whole:
        return 0
    return max(0, min(100, round(100 * (part or 0) / whole)))


@register.filter
def verdict_label(run) -> str:
    """The verdict as its badge says it ("in sync after repair"); see reconcile/wording.py."""
    return wording.verdict_label(run)


@register.filter
def verdict_detail(run) -> str:
    """What stands beside a run's verdict badge: what a repair did, and objects in flight."""
    return wording.verdict_detail(run)

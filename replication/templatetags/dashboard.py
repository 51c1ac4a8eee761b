"""Template filters for the dashboard: times, durations, counts, state badges."""

import re
from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe

from replication.dashboard import humanize
from replication.reconcile import wording
from replication.status import health

register = template.Library()


@register.filter
def utctime(value: datetime | None, style: str = "datetime"):
    """A ``<time>`` in UTC with UTC on hover; static/dashboard/localtime.js shows it in the
    viewer's time zone. ``style`` "hour" shows the hour and minute alone (the date on hover)."""
    if value is None:
        return ""
    value = value.astimezone(UTC)
    iso = value.isoformat().replace("+00:00", "Z")
    full = f"{value:%Y-%m-%d %H:%M:%S} UTC"
    shown = f"{value:%H:%M} UTC" if style == "hour" else f"{value:%Y-%m-%d %H:%M} UTC"
    return format_html(
        '<time datetime="{}" title="{}" data-style="{}">{}</time>', iso, full, style, shown
    )


# A time as reasons write it: "14:02 UTC" (today) or "2026-11-27 14:02 UTC".
_UTC_IN_TEXT = re.compile(
    r"\b(?:(\d{4})-(\d{2})-(\d{2}) )?([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))? UTC\b"
)


@register.filter(needs_autoescape=True)
def localtimes(text, written_at: datetime | None = None, autoescape: bool = True):
    """``text`` (a health reason) with each UTC time in it as a ``<time>``, shown in the
    viewer's zone by localtime.js with UTC on hover; the rest escaped as usual.

    A time without a date is of the UTC day the text was written (``written_at``, now by
    default), as the health rules write it.
    """
    escape = conditional_escape if autoescape else str
    text = "" if text is None else str(text)
    written_at = (written_at or timezone.now()).astimezone(UTC)
    parts, last = [], 0
    for match in _UTC_IN_TEXT.finditer(text):
        when = _moment(match, written_at)
        if when is None:
            continue
        parts += [escape(text[last : match.start()]), _time_element(when, match.group(0))]
        last = match.end()
    parts.append(escape(text[last:]))
    return mark_safe("".join(str(part) for part in parts))  # noqa: S308  (each part escaped)


def _moment(match: re.Match, written_at: datetime) -> datetime | None:
    year, month, day, hour, minute, second = match.groups()
    try:
        if year:
            return datetime(int(year), int(month), int(day), tzinfo=UTC).replace(
                hour=int(hour), minute=int(minute), second=int(second or 0)
            )
        when = written_at.replace(
            hour=int(hour), minute=int(minute), second=int(second or 0), microsecond=0
        )
    except ValueError:  # 2026-02-30: not a time after all
        return None
    # Written a moment before midnight and read a moment after: still that day's time.
    if when > written_at + timedelta(minutes=1):
        when -= timedelta(days=1)
    return when


def _time_element(when: datetime, shown: str):
    iso = when.isoformat().replace("+00:00", "Z")
    full = f"{when:%Y-%m-%d %H:%M:%S} UTC"
    return format_html(
        '<time datetime="{}" title="{}" data-style="short">{}</time>', iso, full, shown
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


@register.filter
def verdict_label(run) -> str:
    """The verdict as its badge says it ("in sync after repair"); see reconcile/wording.py."""
    return wording.verdict_label(run)


@register.filter
def verdict_detail(run) -> str:
    """What stands beside a run's verdict badge: what a repair did, and objects in flight."""
    return wording.verdict_detail(run)

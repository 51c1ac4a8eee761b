"""When a change of health is worth a message (pure: no Django, no I/O).

- A pair's first evaluation records its state; it alerts only when that state is already a
  problem (critical or warning), so switching alerts on reports what is wrong today.
- A change to critical or warning alerts (from any state, including critical -> warning,
  which says the problem eased but is not gone).
- A change from critical or warning to ok is "resolved".
- Changes to or from paused and unknown are recorded but send nothing: pausing a pair is
  deliberate, and unknown means nothing is known yet.
- While a pair stays critical, a reminder every ``interval`` after the change; only the
  latest one due is sent, so a beat that was down for hours sends one reminder, not many.
- A different reason within the same state is not a change.
- Flapping: once a pair has made ``threshold`` changes that send messages within ``window``,
  its further alerts and resolutions are held, and one summary goes out when the pair has
  settled (no change for ``settle``) or, while it keeps flapping, once the oldest held
  message has waited ``window``: at most one summary a window.
"""

import enum
from datetime import datetime, timedelta

from replication.status.health import State

PROBLEMS = frozenset({State.CRITICAL, State.WARNING})


class Kind(enum.StrEnum):
    ALERT = "alert"
    RESOLVED = "resolved"
    REMINDER = "reminder"
    SUMMARY = "summary"  # what a flapping pair did while its messages were held
    TEST = "test"


def message_for_change(previous: State | None, current: State) -> Kind | None:
    """The message a change from ``previous`` (None: first evaluation) to ``current`` sends."""
    if previous == current:
        return None
    if current in PROBLEMS:
        return Kind.ALERT
    if current == State.OK and previous in PROBLEMS:
        return Kind.RESOLVED
    return None


def reminder_due(state: State, since: datetime, now: datetime, interval: timedelta | None) -> int:
    """The number of the reminder due now for a pair in ``state`` since ``since``; 0 if none.

    Reminder n is due ``n * interval`` after the change. Only critical pairs are reminded of.
    """
    if state != State.CRITICAL or not interval or interval <= timedelta(0) or now <= since:
        return 0
    return int((now - since) / interval)


def retry_delay(attempts: int, base: int, maximum: int) -> timedelta:
    """Exponential backoff after ``attempts`` failed attempts: base, 2*base, 4*base... capped."""
    return timedelta(seconds=min(maximum, base * 2 ** max(attempts - 1, 0)))


def flapping(
    changes: list[tuple[State | None, State, datetime]],
    at: datetime,
    threshold: int,
    window: timedelta,
) -> bool:
    """True when the changes ``(from, to, when)`` that send messages, within ``window`` up to
    and including ``at``, number at least ``threshold`` (0 or less: never)."""
    if threshold <= 0:
        return False
    recent = [
        when
        for previous, current, when in changes
        if at - window < when <= at and message_for_change(previous, current) is not None
    ]
    return len(recent) >= threshold


def summary_due(
    held_since: datetime,
    last_change: datetime,
    now: datetime,
    settle: timedelta,
    window: timedelta,
) -> bool:
    """True when the messages held since ``held_since`` are to be summed up now: the pair
    has not changed for ``settle``, or the oldest has waited a whole ``window``."""
    return now - last_change >= settle or now - held_since >= window

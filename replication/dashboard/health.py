"""A pair's health: one pure function of what is known about it. No Django, no I/O.

Pages, /metrics and alerts all call ``evaluate``, so a pair is never OK on one and CRITICAL
on another. The facts come from replication/dashboard/facts.py.

The rules (most severe first; the state is the worst that applies, the reason says why):

- paused:   the pair is disabled;
- unknown:  no copy ever reported and never reconciled;
- critical: the backup lacks or contradicts objects older than the grace period: the last
            reconcile's verdict is out of sync, or a copy failure older than grace is open;
- warning:  p95 lag over the objective, open failures still within grace, the last verdict
            unproven, a scheduled reconcile overdue (twice its interval), or the last
            reconcile failed;
- ok:       none of the above.
"""

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from replication.reconcile.verdict import OUT_OF_SYNC, UNPROVEN


class State(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    PAUSED = "paused"

    @property
    def rank(self) -> int:
        """Sort key, worst first: what needs a person comes before what does not."""
        return _RANK[self]


_RANK = {
    State.CRITICAL: 0,
    State.WARNING: 1,
    State.UNKNOWN: 2,
    State.OK: 3,
    State.PAUSED: 4,
}


@dataclass(frozen=True)
class RunFacts:
    """What health needs of one finished reconcile run."""

    id: int
    status: str  # "succeeded" or "failed"
    verdict: str  # "" for a failed run
    created_at: datetime
    finished_at: datetime | None
    missing: int = 0
    mismatched: int = 0
    extra: int = 0
    unverified: int = 0
    error: str = ""


@dataclass(frozen=True)
class PairFacts:
    """Everything the health rules read about one pair, gathered in bulk by facts.py."""

    name: str
    enabled: bool
    created_at: datetime
    grace: timedelta
    lag_objective: timedelta
    reconcile_every: timedelta | None
    mirror_deletes: bool = False
    has_events: bool = False
    lag_p95: timedelta | None = None  # over the last hour; None when nothing was copied
    lag: tuple[timedelta, ...] | None = None  # p50, p95, p99 over the same hour, for pages
    open_failures: int = 0
    oldest_open_failure_at: datetime | None = None  # event time of the oldest
    lacking: int = 0  # found missing or mismatched by a reconcile, not copied since
    lacking_since: datetime | None = None  # when a reconcile first found one lacking
    oldest_lacking_modified_at: datetime | None = None  # the oldest lacking object's age
    last_run: RunFacts | None = None  # the latest finished run, succeeded or failed
    last_verdict_run: RunFacts | None = None  # the latest succeeded run


@dataclass(frozen=True)
class Health:
    state: State
    reason: str  # the most severe finding, in words a person can act on
    reasons: tuple[str, ...] = field(default=())  # every finding, most severe first


def evaluate(facts: PairFacts, now: datetime) -> Health:
    """The pair's state and the reasons for it, from the rules in this module's docstring."""
    if not facts.enabled:
        return _health(
            State.PAUSED, ["paused: not reconciled or alerted on (enable it in the admin)"]
        )
    if not facts.has_events and facts.last_run is None:
        return _health(
            State.UNKNOWN,
            [
                "no copy reported and never reconciled: point the Lambda's REPORT_URL here, "
                "or press Reconcile now"
            ],
        )
    critical = _critical(facts, now)
    if critical:
        return _health(State.CRITICAL, critical + _warnings(facts, now))
    warnings = _warnings(facts, now)
    if warnings:
        return _health(State.WARNING, warnings)
    return _health(State.OK, [_all_clear(facts)])


def _health(state: State, reasons: list[str]) -> Health:
    return Health(state, reasons[0], tuple(reasons))


def _critical(facts: PairFacts, now: datetime) -> list[str]:
    found = []
    run = facts.last_verdict_run
    if run is not None and run.verdict == OUT_OF_SYNC:
        found.append(
            f"{_run_findings(run, facts.mirror_deletes)} since {clock(run.created_at, now)} "
            f"(reconcile #{run.id})"
        )
    failing_since = facts.oldest_open_failure_at
    if failing_since is not None and now - failing_since > facts.grace:
        found.append(
            f"{_count(facts.open_failures, 'copy', 'copies')} failing, "
            f"the oldest since {clock(failing_since, now)} "
            f"(longer than the {duration(facts.grace)} grace period)"
        )
    return found


def _warnings(facts: PairFacts, now: datetime) -> list[str]:
    found = []
    if facts.lag_p95 is not None and facts.lag_p95 > facts.lag_objective:
        found.append(
            f"p95 lag {duration(facts.lag_p95)} > {duration(facts.lag_objective)} "
            "over the last hour"
        )
    failing_since = facts.oldest_open_failure_at
    if failing_since is not None and now - failing_since <= facts.grace:
        found.append(
            f"{_count(facts.open_failures, 'copy', 'copies')} failing since "
            f"{clock(failing_since, now)}, within the {duration(facts.grace)} grace period"
        )
    run = facts.last_verdict_run
    if run is not None and run.verdict == UNPROVEN:
        found.append(
            f"{_count(run.unverified, 'object')} could not be verified by reconcile "
            f"#{run.id} (unproven)"
        )
    overdue = overdue_by(facts, now)
    if overdue is not None:
        found.append(f"last reconcile overdue by {duration(overdue)}")
    last = facts.last_run
    if last is not None and last.status == "failed":
        error = last.error.strip().splitlines()[0] if last.error.strip() else "no reason given"
        found.append(f"last reconcile (#{last.id}) failed: {error}")
    return found


def overdue_by(facts: PairFacts, now: datetime) -> timedelta | None:
    """How late a scheduled reconcile is, once it is late by a whole interval; else None.

    Due one interval after the last successful run (or after the pair was added); a warning
    only at twice the interval, so one slow or skipped run is not an alarm.
    """
    if facts.reconcile_every is None:
        return None
    run = facts.last_verdict_run
    since = run.created_at if run is not None else facts.created_at
    late = now - (since + facts.reconcile_every)
    return late if late >= facts.reconcile_every else None


def _all_clear(facts: PairFacts) -> str:
    run = facts.last_verdict_run
    parts = []
    if run is not None:
        parts.append(f"in sync at reconcile #{run.id}")
    else:
        parts.append("copies arriving; not reconciled yet")
    if facts.lag_p95 is not None:
        parts.append(f"p95 lag {duration(facts.lag_p95)}")
    return ", ".join(parts)


def _run_findings(run: RunFacts, mirror_deletes: bool) -> str:
    counts = [f"{run.missing} missing" if run.missing else ""]
    counts.append(f"{run.mismatched} mismatched" if run.mismatched else "")
    if mirror_deletes and run.extra:
        counts.append(f"{run.extra} extra")
    return ", ".join(c for c in counts if c) or "out of sync"


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def duration(delta: timedelta) -> str:
    """A duration the way a person says it: "45 s", "22 min", "2 h 5 min", "3 d"."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clock(when: datetime, now: datetime) -> str:
    """A time in a reason: "14:02 UTC" today, "2026-11-27 14:02 UTC" otherwise.

    Reasons go into alerts and metrics as plain text, so they name their time zone.
    """
    when, now = when.astimezone(UTC), now.astimezone(UTC)
    if when.date() == now.date():
        return f"{when:%H:%M} UTC"
    return f"{when:%Y-%m-%d %H:%M} UTC"

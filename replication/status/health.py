"""A pair's health: one pure function of what is known about it. No Django, no I/O.

Pages, /metrics, alerts and badges all call ``evaluate``, so a pair is never OK on one and
CRITICAL on another. The facts come from replication/status/facts.py.

The rules (most severe first; the state is the worst that applies, the reason says why):

- paused:   the pair is disabled;
- unknown:  no copy ever reported and never reconciled (and no other room reports a
            problem);
- critical: the backup has lacked an object for longer than the grace period (see
            lacking.py: found missing or mismatched, settled missing, or an open failure,
            counted from the event that should have copied it); the last reconcile failed
            because a bucket is gone or access to it is denied; extras in the backup of a
            pair that mirrors deletes; a critical finding of another room;
- warning:  objects lacking, all still within the grace period (a run out of sync only
            through failures within grace is one); p95 lag over the objective; the last
            verdict unproven; a scheduled reconcile overdue (twice its interval); the last
            reconcile failed for another reason; objects written after the pair was
            registered that no copy report mentioned, older than grace (the Lambda or its
            trigger is not running); a warning finding of another room;
- ok:       none of the above, so nothing is lacking.
"""

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from replication.reconcile.verdict import OUT_OF_SYNC, UNPROVEN
from replication.status.lacking import NOTHING, Lacking


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
    lacking: Lacking = NOTHING  # what the backup lacks (lacking.py)
    # Objects found lacking by a reconcile that no copy report ever mentioned, written after
    # the pair was registered: how many, and the oldest one's LastModified.
    unreported: int = 0
    oldest_unreported_at: datetime | None = None
    last_run: RunFacts | None = None  # the latest finished run, succeeded or failed
    last_verdict_run: RunFacts | None = None  # the latest succeeded run
    # What other rooms (protection, restore drills, evidence...) found: (state, reason)
    # pairs, "critical" or "warning", added to this module's own findings. See
    # facts.FINDING_SOURCES.
    extra_findings: tuple[tuple[str, str], ...] = ()

    @property
    def open_failures(self) -> int:
        return self.lacking.failed


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
    critical = _critical(facts, now)
    warnings = _warnings(facts, now)
    if not facts.has_events and facts.last_run is None and not critical and not warnings:
        return _health(
            State.UNKNOWN,
            [
                "no copy reported and never reconciled: point the Lambda's REPORT_URL here, "
                "or press Reconcile now"
            ],
        )
    if critical:
        return _health(State.CRITICAL, critical + warnings)
    if warnings:
        return _health(State.WARNING, warnings)
    return _health(State.OK, [_all_clear(facts)])


def _health(state: State, reasons: list[str]) -> Health:
    return Health(state, reasons[0], tuple(reasons))


# The ends of a failed run's reason that say a bucket is gone or closed to us: the reconcile
# listing's words (replication/reconcile/listing.py) and S3's error codes.
BUCKET_GONE = ("does not exist", "nosuchbucket")
ACCESS_DENIED = ("access denied", "accessdenied", "is denied", "forbidden", "allaccessdisabled")


def bucket_unreachable(error: str) -> bool:
    """True when a run's error says a bucket of the pair is gone or access to it is denied."""
    text = error.lower()
    return any(words in text for words in BUCKET_GONE + ACCESS_DENIED)


def _lacking_past_grace(facts: PairFacts, now: datetime) -> bool:
    """Whether the backup has lacked an object for longer than the grace period; an object
    lacking since a time nobody knows counts as lacking for longer."""
    behind = facts.lacking.behind_by(now)
    return behind is None or behind > facts.grace


def _lacking_reason(facts: PairFacts, now: datetime) -> str:
    lacking = facts.lacking
    behind = lacking.behind_by(now)
    if behind is None:
        return f"{_count(lacking.total, 'object')} lacking: {lacking.kinds()}"
    within = "longer than" if behind > facts.grace else "within"
    return (
        f"{_count(lacking.total, 'object')} lacking, behind by {duration(behind)}: "
        f"{lacking.kinds()} since {clock(lacking.since, now)} "
        f"({within} the {duration(facts.grace)} grace period)"
    )


def _critical(facts: PairFacts, now: datetime) -> list[str]:
    found = []
    if facts.lacking.total and _lacking_past_grace(facts, now):
        found.append(_lacking_reason(facts, now))
    last = facts.last_run
    if last is not None and last.status == "failed" and bucket_unreachable(last.error):
        found.append(f"{_first_line(last.error)} (reconcile #{last.id} failed)")
    run = facts.last_verdict_run
    if run is not None and run.verdict == OUT_OF_SYNC and facts.mirror_deletes and run.extra:
        found.append(
            f"{_count(run.extra, 'object')} in the backup that the source deleted, on a pair "
            f"that mirrors deletes (reconcile #{run.id})"
        )
    found += [reason for state, reason in facts.extra_findings if state == State.CRITICAL]
    return found


def _warnings(facts: PairFacts, now: datetime) -> list[str]:
    found = []
    if facts.lacking.total and not _lacking_past_grace(facts, now):
        found.append(_lacking_reason(facts, now))
    if facts.lag_p95 is not None and facts.lag_p95 > facts.lag_objective:
        found.append(
            f"p95 lag {duration(facts.lag_p95)} > {duration(facts.lag_objective)} "
            "over the last hour"
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
    if last is not None and last.status == "failed" and not bucket_unreachable(last.error):
        found.append(f"last reconcile (#{last.id}) failed: {_first_line(last.error)}")
    oldest = facts.oldest_unreported_at
    if facts.unreported and oldest is not None and now - oldest > facts.grace:
        found.append(
            "objects written with no copy report: is the Lambda or its trigger running? "
            f"({facts.unreported} found by reconcile, the oldest written {clock(oldest, now)})"
        )
    found += [reason for state, reason in facts.extra_findings if state == State.WARNING]
    return found


def _first_line(error: str) -> str:
    return error.strip().splitlines()[0] if error.strip() else "no reason given"


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
    # Reached only when nothing is lacking: "in sync" is then the truth, even when the last
    # run found differences that copies have resolved since.
    run = facts.last_verdict_run
    parts = []
    if run is None:
        parts.append("copies arriving; not reconciled yet")
    elif run.verdict == OUT_OF_SYNC:
        parts.append(f"in sync: what reconcile #{run.id} found lacking was copied since")
    else:
        parts.append(f"in sync at reconcile #{run.id}")
    if facts.lag_p95 is not None:
        parts.append(f"p95 lag {duration(facts.lag_p95)}")
    return ", ".join(parts)


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

"""The monthly report of one pair: what an auditor asks of a backup, gathered in a bounded
number of queries (none of them reads events: freshness comes from the per-day tallies).

Sections: freshness against the target with the worst days; reconcile coverage (days with
an in-sync verdict, every out-of-sync run, what it found and how it ended); protection
checks over the month (from their results' history); restore drills (a ``Section``, "not
recorded" until those records exist); health changes and the alerts sent. The page
(views.py), the CSV (export.py) and the ``report`` command all render this one object.
"""

import operator
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import reduce

from django.db.models import Count, F, OuterRef, Q, Subquery, Window
from django.db.models.functions import Lead, TruncDate

from replication.dashboard.humanize import duration
from replication.evidence.charts import FreshnessChart, freshness_chart
from replication.evidence.facts import (
    Objective,
    current_objective,
    daily_counts,
    objective_at,
    period,
)
from replication.evidence.freshness import (
    Freshness,
    days_of,
    midnight,
    month_problem,
    next_month,
    utc_day,
)
from replication.evidence.protection import CheckMonth, Result, StateChange, months_of_checks
from replication.models import (
    BucketPair,
    HealthChange,
    Notification,
    ObjectiveChange,
    ProtectionCheck,
    ProtectionResult,
    ReconcileRun,
    RestoreDrill,
)

WORST_DAYS = 5
IN_SYNC = ReconcileRun.Verdict.IN_SYNC
OUT_OF_SYNC = ReconcileRun.Verdict.OUT_OF_SYNC


class NoReport(Exception):
    """The month has no report (in the future, or before the pair existed); the message is
    the one line to show."""


@dataclass
class Day:
    day: date
    freshness: Freshness
    verdicts: Counter  # verdict (or "failed") -> runs created that day
    counted: bool  # within the pair's life and not in the future

    @property
    def in_sync(self) -> bool:
        return self.verdicts[IN_SYNC] > 0

    @property
    def coverage(self) -> str:
        """in_sync, out_of_sync, unproven, failed, none or not_counted: the day's cell."""
        if not self.counted:
            return "not_counted"
        for verdict in (IN_SYNC, OUT_OF_SYNC, ReconcileRun.Verdict.UNPROVEN, "failed"):
            if self.verdicts[verdict]:
                return str(verdict)
        return "none"


@dataclass
class OutOfSyncRun:
    run: ReconcileRun
    resolved_by_id: int | None
    resolved_at: datetime | None

    @property
    def found(self) -> str:
        run = self.run
        parts = [
            f"{getattr(run, name):,} {name}"
            for name in ("missing", "mismatched", "extra", "unverified")
            if getattr(run, name)
        ]
        return ", ".join(parts) or "differences not counted"

    @property
    def ended(self) -> str:
        """How it ended, in words (UTC: this text also leaves the site as CSV)."""
        parts = []
        if self.run.repair:
            repaired = f"repaired {self.run.repaired:,}"
            if self.run.repair_failed:
                repaired += f", {self.run.repair_failed:,} repairs failed"
            parts.append(repaired)
        if self.resolved_at is None:
            parts.append("not in sync again since")
        else:
            after = duration(self.resolved_at - self.run.created_at)
            parts.append(
                f"in sync again at run #{self.resolved_by_id}, "
                f"{self.resolved_at:%Y-%m-%d %H:%M} UTC ({after} later)"
            )
        return "; ".join(parts)


@dataclass
class Section:
    """A section fed by records that do not exist yet (restore drills)."""

    recorded: bool
    rows: list = field(default_factory=list)
    note: str = ""


@dataclass
class ProtectionSection:
    """Each check's month (state at the start, changes, worst state, share of time ok);
    recorded when at least one check ran in the month."""

    recorded: bool
    checks: list[CheckMonth] = field(default_factory=list)
    note: str = ""
    since: datetime | None = None  # the time measured: the month, from the pair's creation
    until: datetime | None = None  # and up to now

    @property
    def changes(self) -> list[StateChange]:
        """Every change of state of the month, in time order."""
        found = [c for month in self.checks for c in month.changes]
        return sorted(found, key=lambda c: c.at)


@dataclass
class Report:
    pair: BucketPair
    month: date
    generated_at: datetime
    objective: Objective  # in force at the month's end (or now)
    objective_at_start: Objective
    changes: list[ObjectiveChange]
    freshness: Freshness
    days: list[Day]
    runs_by_verdict: Counter
    out_of_sync: list[OutOfSyncRun]
    protection: ProtectionSection
    drills: Section
    state_at_start: HealthChange | None
    health_changes: list[HealthChange]
    notifications: list[Notification]
    chart: FreshnessChart | None = None

    @property
    def label(self) -> str:
        return f"{self.month:%Y-%m}"

    @property
    def complete(self) -> bool:
        """The month is over: its figures will not change."""
        return midnight(next_month(self.month)) <= self.generated_at

    @property
    def last_day(self) -> date:
        return self.days[-1].day

    @property
    def counted_days(self) -> list[Day]:
        return [d for d in self.days if d.counted]

    @property
    def in_sync_days(self) -> int:
        return sum(d.in_sync for d in self.counted_days)

    @property
    def verdict_counts(self) -> list[tuple[str, int]]:
        """(verdict or "failed", runs), in the order people read them."""
        order = [IN_SYNC, OUT_OF_SYNC, ReconcileRun.Verdict.UNPROVEN, "failed"]
        return [(str(v), self.runs_by_verdict[v]) for v in order if self.runs_by_verdict[v]]

    @property
    def runs(self) -> int:
        return sum(self.runs_by_verdict.values())

    @property
    def worst_days(self) -> list[Day]:
        """The days with the lowest share within the objective (those with late copies)."""
        late = [d for d in self.days if d.freshness.late]
        late.sort(key=lambda d: (d.freshness.within / d.freshness.copies, d.day))
        return late[:WORST_DAYS]

    @property
    def alerts_sent(self) -> list[Notification]:
        return [n for n in self.notifications if n.status == Notification.Status.SENT]


def build_report(pair: BucketPair, month: date, now: datetime) -> Report:
    """The report of ``pair`` for ``month`` (its first day); raises NoReport for a month in
    the future or before the pair existed. Ten queries whatever the month held
    (nine when no protection check ran in it)."""
    problem = month_problem(month, now, pair.created_at)
    if problem:
        raise NoReport(problem)
    start, end = midnight(month), midnight(next_month(month))
    # Objective changes from the month's start on: those after it tell what was in force.
    changes = list(ObjectiveChange.objects.filter(pair=pair, at__gte=start))
    current = current_objective(pair)
    objective = objective_at(changes, current, min(end, now))
    days_counts = daily_counts([pair.pk], month, next_month(month)).get(pair.pk, {})
    verdicts = _verdicts_by_day(pair, start, end)
    first_counted = max(month, utc_day(pair.created_at))
    last_counted = utc_day(min(now, end - timedelta(microseconds=1)))
    days = [
        Day(
            day,
            period(days_counts, day, day + timedelta(days=1), objective.target),
            verdicts.get(day, Counter()),
            first_counted <= day <= last_counted,
        )
        for day in days_of(month)
    ]
    runs_by_verdict: Counter = Counter()
    for counts in verdicts.values():
        runs_by_verdict.update(counts)
    report = Report(
        pair=pair,
        month=month,
        generated_at=now,
        objective=objective,
        objective_at_start=objective_at(changes, current, start),
        changes=[c for c in changes if c.at < end],
        freshness=period(days_counts, month, next_month(month), objective.target),
        days=days,
        runs_by_verdict=runs_by_verdict,
        out_of_sync=_out_of_sync_runs(pair, start, end),
        protection=protection_section(pair, start, end, now),
        drills=drills_section(pair, start, end),
        state_at_start=HealthChange.objects.filter(pair=pair, at__lt=start)
        .order_by("-at", "-id")
        .first(),
        health_changes=list(
            HealthChange.objects.filter(pair=pair, at__gte=start, at__lt=end).order_by("at", "id")
        ),
        notifications=list(
            Notification.objects.filter(
                change__pair=pair, created_at__gte=start, created_at__lt=end
            )
            .select_related("channel", "change")
            .order_by("created_at", "id")
        ),
    )
    report.chart = freshness_chart(
        [(f"{d.day:%d}", d.freshness) for d in days],
        objective.target,
        long_labels=[f"{d.day:%Y-%m-%d}" for d in days],
    )
    return report


def _verdicts_by_day(pair: BucketPair, start: datetime, end: datetime) -> dict[date, Counter]:
    """Finished runs per UTC day by verdict ("failed" for runs that failed): one grouped
    query (a pair reconciled every few minutes has thousands of runs a month)."""
    rows = (
        ReconcileRun.objects.filter(
            pair=pair,
            created_at__gte=start,
            created_at__lt=end,
            status__in=[ReconcileRun.Status.SUCCEEDED, ReconcileRun.Status.FAILED],
        )
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values_list("day", "status", "verdict")
        .annotate(n=Count("id"))
        .order_by()
    )
    days: dict[date, Counter] = {}
    for day, status, verdict, n in rows:
        key = verdict if status == ReconcileRun.Status.SUCCEEDED else "failed"
        days.setdefault(day, Counter())[key] += n
    return days


def _out_of_sync_runs(pair: BucketPair, start: datetime, end: datetime) -> list[OutOfSyncRun]:
    """Every out-of-sync run of the month with the first in-sync run after it (one query)."""
    next_in_sync = ReconcileRun.objects.filter(
        pair=pair, verdict=IN_SYNC, created_at__gt=OuterRef("created_at")
    ).order_by("created_at", "id")
    runs = (
        ReconcileRun.objects.filter(
            pair=pair, verdict=OUT_OF_SYNC, created_at__gte=start, created_at__lt=end
        )
        .annotate(
            resolved_by_id=Subquery(next_in_sync.values("id")[:1]),
            resolved_at=Subquery(next_in_sync.values("created_at")[:1]),
        )
        .order_by("created_at", "id")
    )
    return [OutOfSyncRun(run, run.resolved_by_id, run.resolved_at) for run in runs]


def protection_section(
    pair: BucketPair, start: datetime, end: datetime, now: datetime
) -> ProtectionSection:
    """Protection checks of the month from their results (two queries, whatever the number
    of results: the month's changes, then the result in force at the start of each check)."""
    span_start, span_end = max(start, pair.created_at), min(end, now)
    history = ProtectionResult.objects.filter(pair=pair)
    # The month's results that differ from the check's previous result in the month, and
    # each check's first: the window runs in the database, so a check run every few minutes
    # sends only its changes (the first is compared with the state at the start here).
    in_month = (
        history.filter(checked_at__gte=span_start, checked_at__lt=span_end)
        .annotate(
            # Newest first, in the order of protection_history_idx, so that PostgreSQL reads
            # the index instead of sorting the month's results: the previous result is the
            # next row. (Two results of one check at the same microsecond do not happen.)
            previous=Window(
                Lead("state"), partition_by=[F("check_id")], order_by=F("checked_at").desc()
            )
        )
        .filter(Q(previous__isnull=True) | ~Q(previous=F("state")))
        .order_by("check_id", "-checked_at")
        .values_list("check_id", "state", "reason", "checked_at")
    )
    results = [Result(*row) for row in in_month]
    if not results:
        return ProtectionSection(
            recorded=False, note="Protection checks: not recorded (no check ran this month)."
        )
    # The latest result of each check before the month: one index probe per check
    # (protection_history_idx: pair, check_id, -checked_at; ordering by id too would sort
    # all of the check's history instead).
    latest_before = reduce(
        operator.or_,
        (
            Q(
                pk=Subquery(
                    history.filter(check_id=check, checked_at__lt=span_start)
                    .order_by("-checked_at")
                    .values("pk")[:1]
                )
            )
            for check in ProtectionCheck.values
        ),
    )
    at_start = {
        check: Result(check, state, reason, at)
        for check, state, reason, at in history.filter(latest_before).values_list(
            "check_id", "state", "reason", "checked_at"
        )
    }
    return ProtectionSection(
        recorded=True,
        checks=months_of_checks(at_start, results, span_start, span_end),
        since=span_start,
        until=span_end,
    )


def drills_section(pair: BucketPair, start: datetime, end: datetime) -> Section:
    """Restore drills started in the month, oldest first, one row each (one query)."""
    rows = []
    drills = RestoreDrill.objects.filter(pair=pair, started_at__gte=start, started_at__lt=end)
    for drill in drills.order_by("started_at", "id"):
        if drill.status == RestoreDrill.Status.RUNNING:
            outcome = "still running"
        elif drill.error:
            outcome = drill.error.strip().splitlines()[0]
        else:
            outcome = (
                f"{drill.verified} of {drill.sampled} objects verified, "
                f"{drill.sampled_bytes:,} bytes"
            )
            if drill.duration_s is not None:
                outcome += f" in {drill.duration_s:.1f} s"
        rows.append(
            [
                f"{drill.started_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
                f"drill #{drill.pk} ({drill.get_trigger_display()})",
                drill.get_status_display(),
                outcome,
            ]
        )
    if not rows:
        return Section(recorded=False, note="Restore drills: none ran this month.")
    return Section(recorded=True, rows=rows)

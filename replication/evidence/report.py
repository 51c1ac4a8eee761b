"""The monthly report of one pair: what an auditor asks of a backup, gathered in a bounded
number of queries (none of them reads events: freshness comes from the per-day tallies).

Sections: freshness against the target with the worst days; reconcile coverage (days with
an in-sync verdict, every out-of-sync run, what it found and how it ended); protection
checks and restore drills (``Section``s, "not recorded" until those records exist); health
changes and the alerts sent. The page (views.py), the CSV (export.py) and the ``report``
command all render this one object.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import TruncDate

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
from replication.models import (
    BucketPair,
    HealthChange,
    Notification,
    ObjectiveChange,
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
    """A section fed by records that may not exist yet (protection checks, restore drills)."""

    recorded: bool
    rows: list = field(default_factory=list)
    note: str = ""


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
    protection: Section
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
    the future or before the pair existed. Eight queries whatever the month held."""
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
        protection=protection_section(pair, start, end),
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


def protection_section(pair: BucketPair, start: datetime, end: datetime) -> Section:
    """Protection checks of the month and their changes. Not recorded yet: this site keeps
    no protection check results; once it does, read them here (one query)."""
    return Section(recorded=False, note="Protection checks: not recorded.")


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

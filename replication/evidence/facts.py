"""Freshness as the pages, /metrics and health read it: sums of the per-day tallies, in a
bounded number of queries whatever the number of events (the ORM edge; the maths is in
freshness.py)."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Sum

from replication.evidence.charts import FreshnessChart, freshness_chart
from replication.evidence.freshness import (
    Freshness,
    freshness_finding,
    midnight,
    month_start,
    months_back,
    next_month,
    utc_day,
    window_days,
)
from replication.models import BucketPair, FreshnessTally, ObjectiveChange

# pair id -> day -> (copies, within)
Days = dict[int, dict[date, tuple[int, int]]]


def daily_counts(pair_ids: Iterable[int], first: date, end: date) -> Days:
    """Copies and copies within the objective per pair and UTC day, ``first <= day < end``:
    one query (shards and objectives summed)."""
    days: Days = defaultdict(dict)
    rows = (
        FreshnessTally.objects.filter(pair_id__any=list(pair_ids), day__gte=first, day__lt=end)
        .values_list("pair_id", "day")
        .annotate(n=Sum("copies"), w=Sum("within"))
        .order_by()
    )
    for pair_id, day, copies, within in rows:
        days[pair_id][day] = (int(copies), int(within))
    return days


def period(days: dict[date, tuple[int, int]], first: date, end: date, target: Decimal) -> Freshness:
    """The freshness of ``first <= day < end`` from one pair's daily counts (pure)."""
    copies = within = 0
    for day, (n, w) in days.items():
        if first <= day < end:
            copies += n
            within += w
    return Freshness(copies, within, target)


@dataclass(frozen=True)
class Objective:
    """A pair's lag objective (seconds) and freshness target (percent)."""

    seconds: int
    target: Decimal


def objective_at(
    changes: Sequence[ObjectiveChange], current: Objective, moment: datetime
) -> Objective:
    """The objective in force at ``moment``: the values before the first change after it, or
    the present ones (pure; ``changes`` oldest first)."""
    for change in changes:
        if change.at > moment:
            return Objective(change.lag_objective_before, change.target_before)
    return current


def current_objective(pair: BucketPair) -> Objective:
    return Objective(int(pair.lag_objective_seconds), Decimal(str(pair.freshness_target)))


@dataclass
class MonthFreshness:
    month: date
    freshness: Freshness
    objective: Objective  # in force at the month's end (or now)

    @property
    def label(self) -> str:
        return f"{self.month:%Y-%m}"


@dataclass
class PairFreshness:
    """What the pair page shows: the last 30 days, this month, and the twelve before it."""

    pair: BucketPair
    objective: Objective
    window: Freshness
    months: list[MonthFreshness]  # oldest first; the last is this month
    changes: list[ObjectiveChange] = field(default_factory=list)  # within those months

    @property
    def month(self) -> MonthFreshness:
        return self.months[-1]

    @property
    def chart(self) -> FreshnessChart:
        return freshness_chart(
            [(f"{m.month:%b}", m.freshness) for m in self.months],
            self.objective.target,
            long_labels=[m.label for m in self.months],
        )


def pair_freshness(pair: BucketPair, now: datetime) -> PairFreshness:
    """The pair page's freshness panel: two queries."""
    months = months_back(now)
    first, end = months[0], next_month(months[-1])
    days = daily_counts([pair.pk], first, end).get(pair.pk, {})
    changes = list(ObjectiveChange.objects.filter(pair=pair, at__gte=midnight(first)))
    return build_pair_freshness(pair, now, days, changes)


def build_pair_freshness(
    pair: BucketPair,
    now: datetime,
    days: dict[date, tuple[int, int]],
    changes: Sequence[ObjectiveChange],
) -> PairFreshness:
    """PairFreshness from one pair's daily counts and objective changes (pure)."""
    current = current_objective(pair)
    window_first, window_end = window_days(now)
    rows = []
    for month in months_back(now):
        end = next_month(month)
        objective = objective_at(changes, current, min(midnight(end), now))
        rows.append(MonthFreshness(month, period(days, month, end, objective.target), objective))
    return PairFreshness(
        pair=pair,
        objective=current,
        window=period(days, window_first, window_end, current.target),
        months=rows,
        changes=list(changes),
    )


@dataclass(frozen=True)
class Summary:
    """The figures /metrics and the overview show for one pair."""

    window: Freshness  # the last 30 days
    month: Freshness  # this month so far


# Within read_once(): pair id -> (target, Summary) by instant. A page or a scrape reads the
# 30-day figures twice at one instant (health's freshness finding for every pair, then its
# own column or series); the second read reuses the first.
_kept: ContextVar[dict[datetime, dict[int, tuple[Decimal, Summary]]] | None] = ContextVar(
    "freshness_summaries", default=None
)


@contextmanager
def read_once():
    """Within the block, summaries() of a pair at an instant already read are not read again.
    Scoped to one request or scrape, so nothing outlives it."""
    token = _kept.set({})
    try:
        yield
    finally:
        _kept.reset(token)


def summaries(pairs: Iterable[BucketPair], now: datetime) -> dict[int, Summary]:
    """The 30-day and this-month figures of every pair: one query (none for pairs read at
    the same instant inside read_once)."""
    pairs = list(pairs)
    kept = _kept.get()
    targets = {pair.pk: current_objective(pair).target for pair in pairs}
    if kept is not None:
        known = kept.get(now, {})
        if all(known.get(pk, (None,))[0] == target for pk, target in targets.items()):
            return {pk: known[pk][1] for pk in targets}
    window_first, window_end = window_days(now)
    this_month = month_start(utc_day(now))
    first = min(window_first, this_month)
    days = daily_counts(list(targets), first, window_end)
    result = {}
    for pk, target in targets.items():
        counts = days.get(pk, {})
        result[pk] = Summary(
            window=period(counts, window_first, window_end, target),
            month=period(counts, this_month, window_end, target),
        )
    if kept is not None:
        kept.setdefault(now, {}).update(
            {pk: (targets[pk], summary) for pk, summary in result.items()}
        )
    return result


def health_findings(pairs: Iterable[BucketPair], now: datetime) -> dict[int, list[tuple[str, str]]]:
    """Per pair, the freshness findings for the health function: ("warning", reason) when
    the last 30 days fall below the target. One query whatever the number of pairs; pairs
    without a finding map to an empty list."""
    pairs = list(pairs)
    figures = summaries(pairs, now)
    findings: dict[int, list[tuple[str, str]]] = {}
    for pair in pairs:
        finding = freshness_finding(figures[pair.pk].window, int(pair.lag_objective_seconds))
        findings[pair.pk] = [finding] if finding else []
    return findings

"""The facts health reads, gathered for many pairs at once (the ORM side of health.py).

Five queries whatever the number of pairs and events: the pairs with their latest runs'
ids, the runs themselves, open failures, lacking objects, and the last hour's lag
percentiles. Every one is served by a named index (see the models).
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Exists, Min, OuterRef, QuerySet, Subquery
from django.utils import timezone

from replication.dashboard.health import Health, PairFacts, RunFacts, evaluate
from replication.dashboard.stats import LAG_PERCENTILES, percentiles
from replication.models import BucketPair, CopyEvent, CopyStatus, ObjectState, ReconcileRun

# Health judges lag over this window; pages may show others.
LAG_WINDOW = timedelta(hours=1)
# Results that moved bytes (or removed them) count towards lag; a failure's time is not lag.
LAG_STATUSES = (CopyStatus.COPIED, CopyStatus.DELETED)


@dataclass(frozen=True)
class PairHealth:
    pair: BucketPair
    facts: PairFacts
    health: Health


def pair_health(
    pairs: QuerySet[BucketPair] | None = None, now: datetime | None = None
) -> list[PairHealth]:
    """Every pair (or those of ``pairs``) with its facts and health, worst first."""
    now = now or timezone.now()
    annotated = list(_with_latest_runs(pairs if pairs is not None else BucketPair.objects.all()))
    facts = pair_facts(annotated, now)
    result = [PairHealth(p, facts[p.pk], evaluate(facts[p.pk], now)) for p in annotated]
    result.sort(key=lambda h: (h.health.state.rank, h.pair.name))
    return result


def pair_facts(pairs: Iterable[BucketPair], now: datetime) -> dict[int, PairFacts]:
    """PairFacts by pair id, for pairs loaded through ``_with_latest_runs``."""
    pairs = list(pairs)
    ids = [p.pk for p in pairs]
    run_ids = {p.last_run_id for p in pairs} | {p.last_verdict_run_id for p in pairs}
    runs = {r.id: _run_facts(r) for r in ReconcileRun.objects.filter(id__in=run_ids - {None})}
    failures = {
        row["pair_id"]: row
        for row in ObjectState.objects.open_failures()
        .filter(pair_id__in=ids)
        .values("pair_id")
        .annotate(n=Count("id"), oldest=Min("event_time"))
        .order_by()
    }
    lacking = {
        row["pair_id"]: row
        for row in ObjectState.objects.lacking()
        .filter(pair_id__in=ids)
        .values("pair_id")
        .annotate(n=Count("id"), since=Min("lacking_since"), oldest=Min("source_modified_at"))
        .order_by()
    }
    lags = lag_percentiles(ids, since=now - LAG_WINDOW)
    return {
        p.pk: PairFacts(
            name=p.name,
            enabled=p.enabled,
            created_at=p.created_at,
            grace=p.grace_period,
            lag_objective=p.lag_objective,
            reconcile_every=(
                timedelta(minutes=p.reconcile_every_minutes) if p.reconcile_every_minutes else None
            ),
            mirror_deletes=p.mirror_deletes,
            has_events=p.has_events,
            lag_p95=lags[p.pk][1] if p.pk in lags else None,
            lag=lags.get(p.pk),
            open_failures=failures.get(p.pk, {}).get("n", 0),
            oldest_open_failure_at=failures.get(p.pk, {}).get("oldest"),
            lacking=lacking.get(p.pk, {}).get("n", 0),
            lacking_since=lacking.get(p.pk, {}).get("since"),
            oldest_lacking_modified_at=lacking.get(p.pk, {}).get("oldest"),
            last_run=runs.get(p.last_run_id),
            last_verdict_run=runs.get(p.last_verdict_run_id),
        )
        for p in pairs
    }


def _with_latest_runs(pairs: QuerySet[BucketPair]) -> QuerySet[BucketPair]:
    """Pairs annotated with their latest finished and latest succeeded runs' ids, and
    whether any copy was ever reported for them (one query; the run index serves both)."""
    latest = ReconcileRun.objects.filter(pair=OuterRef("pk")).order_by("-created_at", "-id")
    Status = ReconcileRun.Status
    return pairs.annotate(
        last_run_id=Subquery(
            latest.filter(status__in=[Status.SUCCEEDED, Status.FAILED]).values("id")[:1]
        ),
        last_verdict_run_id=Subquery(latest.filter(status=Status.SUCCEEDED).values("id")[:1]),
        has_events=Exists(
            ObjectState.objects.filter(pair=OuterRef("pk"), sequencer_order__isnull=False)
        ),
    )


def _run_facts(run: ReconcileRun) -> RunFacts:
    return RunFacts(
        id=run.id,
        status=run.status,
        verdict=run.verdict,
        created_at=run.created_at,
        finished_at=run.finished_at,
        missing=run.missing,
        mismatched=run.mismatched,
        extra=run.extra,
        unverified=run.unverified,
        error=run.error,
    )


def lag_percentiles(
    pair_ids: Iterable[int], since: datetime, until: datetime | None = None
) -> dict[int, tuple[timedelta, ...]]:
    """p50, p95 and p99 of copy lag per pair over ``[since, until)`` by finish time.

    One query. PostgreSQL computes them over the window with ``percentile_cont``; other
    databases hand the window's lags to stats.percentiles, which interpolates the same way.
    """
    pair_ids = list(pair_ids)
    if not pair_ids:
        return {}
    events = CopyEvent.objects.filter(
        pair_id__in=pair_ids, finished_at__gte=since, status__in=LAG_STATUSES
    )
    if until is not None:
        events = events.filter(finished_at__lt=until)
    if connection.vendor == "postgresql":
        return _lag_percentiles_postgresql(events)
    lags: dict[int, list[float]] = defaultdict(list)
    for pair_id, lag in events.values_list("pair_id", "lag").order_by():
        lags[pair_id].append(lag.total_seconds())
    return {
        pair_id: tuple(timedelta(seconds=s) for s in percentiles(values))
        for pair_id, values in lags.items()
    }


def _lag_percentiles_postgresql(events: QuerySet[CopyEvent]) -> dict[int, tuple[timedelta, ...]]:
    # The filter is Django's (its SQL and parameters); only the aggregate is written here,
    # since the ORM has no ordered-set aggregates.
    sql, params = events.values("pair_id", "lag").order_by().query.sql_with_params()
    query = (
        "SELECT window_events.pair_id, percentile_cont(%s::double precision[]) "  # noqa: S608
        "WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM window_events.lag)) "
        f"FROM ({sql}) AS window_events GROUP BY window_events.pair_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [list(LAG_PERCENTILES), *params])
        return {
            pair_id: tuple(timedelta(seconds=float(s)) for s in values)
            for pair_id, values in cursor.fetchall()
        }

"""The facts health reads, gathered for many pairs at once (the ORM side of health.py).

Five queries whatever the number of pairs and events: the pairs with their latest runs'
ids, the runs themselves, what the backup lacks (two grouped counts of
``ObjectState.objects.lacking_in_parts()``, each an index only scan of the failures or the
lacking partial index), and the last hour's lag percentiles; plus one call per room in
FINDING_SOURCES.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.module_loading import import_string

from replication.models import BucketPair, CopyEvent, CopyStatus, ObjectState, ReconcileRun
from replication.models.events import OPEN_FAILURE, Finding
from replication.status.health import Health, PairFacts, RunFacts, evaluate
from replication.status.lacking import NOTHING, Lacking
from replication.status.stats import LAG_PERCENTILES, percentiles

logger = logging.getLogger(__name__)

# Health judges lag over this window; pages may show others.
LAG_WINDOW = timedelta(hours=1)
# Results that moved bytes (or removed them) count towards lag; a failure's time is not lag.
LAG_STATUSES = (CopyStatus.COPIED, CopyStatus.DELETED)

# The extension point for rooms with health findings of their own (protection checks,
# restore drills, evidence): dotted paths of functions
# ``health_findings(pairs: list[BucketPair], now: datetime) -> dict[int, list[(state, reason)]]``
# with state "critical" or "warning". Each is called once per gathering, for all pairs, and
# its findings join the pair's own in PairFacts.extra_findings. One line per room, e.g.
# "replication.protection.health.health_findings".
FINDING_SOURCES: tuple[str, ...] = (
    "replication.evidence.facts.health_findings",
    "replication.protection.health.health_findings",
    "replication.restore.status.health_findings",
)


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
    facts = pair_facts(annotated, now, every_pair=pairs is None)
    result = [PairHealth(p, facts[p.pk], evaluate(facts[p.pk], now)) for p in annotated]
    result.sort(key=lambda h: (h.health.state.rank, h.pair.name))
    return result


def pair_facts(
    pairs: Iterable[BucketPair], now: datetime, every_pair: bool = False
) -> dict[int, PairFacts]:
    """PairFacts by pair id, for pairs loaded through ``_with_latest_runs``.

    ``every_pair``: the pairs are all there are, so the counts need not name them: they
    read their indexes through, not once per pair (a thousand descents, at 1,000 pairs).
    """
    pairs = list(pairs)
    ids = [p.pk for p in pairs]
    runs = _latest_runs(pairs)
    lacking = lacking_by_pair(None if every_pair else ids)
    lags = lag_percentiles(None if every_pair else ids, since=now - LAG_WINDOW)
    extra = extra_findings(pairs, now)
    facts = {}
    for p in pairs:
        lacked, unreported, oldest_unreported = lacking.get(p.pk, (NOTHING, 0, None))
        facts[p.pk] = PairFacts(
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
            lacking=lacked,
            unreported=unreported,
            oldest_unreported_at=oldest_unreported,
            last_run=runs.get(p.last_run_id),
            last_verdict_run=runs.get(p.last_verdict_run_id),
            extra_findings=tuple(extra.get(p.pk, ())),
        )
    return facts


def lacking_by_pair(
    pair_ids: list[int] | None,
) -> dict[int, tuple[Lacking, int, datetime | None]]:
    """Per pair (of ``pair_ids``; None: every pair): what the backup lacks, and how many of
    those objects no copy report ever mentioned though they were written after the pair was
    registered (with the oldest's LastModified).

    Two grouped counts, one per part of ``ObjectState.objects.lacking_in_parts()`` (failed
    rows, then the rest): apart, each is an index only scan of one partial index that holds
    every column read; an OR of the two would read a table row per object lacking, which
    grows with the backlog.
    """
    if pair_ids is not None and not pair_ids:
        return {}
    states = ObjectState.objects.all()
    if pair_ids is not None:
        states = states.filter(pair_id__any=pair_ids)
    found: dict[int, dict] = {}
    failed, found_lacking = states.lacking_in_parts()
    # A failed row holds a reported event, so it is never unreported: counting that part
    # without the test spares it a join with the pairs (a third of its time).
    for part, reportless in ((failed, False), (found_lacking, True)):
        for row in _lacking_counts(part, unreported=reportless):
            row.setdefault("unreported", 0)
            row.setdefault("oldest_unreported", None)
            total = found.setdefault(row.pop("pair_id"), dict.fromkeys(row))
            for name, value in row.items():
                total[name] = _combined(name, total[name], value)
    # An open failure whose older finding said missing counts once, as a failure.
    return {
        pair_id: (
            Lacking(
                total=row["total"],
                failed=row["failed"],
                missing=row["missing"] - row["missing_failed"],
                mismatched=row["mismatched"] - row["mismatched_failed"],
                since=row["since"],
            ),
            row["unreported"],
            row["oldest_unreported"],
        )
        for pair_id, row in found.items()
    }


def _lacking_counts(rows: QuerySet[ObjectState], unreported: bool) -> QuerySet:
    missing = Q(finding=Finding.MISSING)
    mismatched = Q(finding=Finding.MISMATCHED)
    counts = {
        "total": Count("pair_id"),
        "failed": Count("pair_id", filter=OPEN_FAILURE),
        "missing": Count("pair_id", filter=missing),
        "missing_failed": Count("pair_id", filter=missing & OPEN_FAILURE),
        "mismatched": Count("pair_id", filter=mismatched),
        "mismatched_failed": Count("pair_id", filter=mismatched & OPEN_FAILURE),
        "since": Min("lacking_from"),
    }
    if unreported:
        written = Q(sequencer_order__isnull=True, source_modified_at__gt=F("pair__created_at"))
        counts["unreported"] = Count("pair_id", filter=written)
        counts["oldest_unreported"] = Min("source_modified_at", filter=written)
    # Counted by pair_id (never null), not by the primary key: the indexes hold no id.
    return rows.values("pair_id").annotate(**counts).order_by()


def _combined(name: str, so_far, value):
    """Two parts' figures as one: counts add, earliest times are the earlier."""
    if so_far is None or value is None:
        return value if so_far is None else so_far
    return min(so_far, value) if name in ("since", "oldest_unreported") else so_far + value


def extra_findings(pairs: list[BucketPair], now: datetime) -> dict[int, list[tuple[str, str]]]:
    """The findings of the rooms in FINDING_SOURCES, by pair id (given the pairs, loaded
    whole, so no room reads them again).

    A room that fails to answer is a warning on every pair, not an error on every page,
    scrape and alert: its checks cannot be read, which is itself worth knowing.
    """
    found: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for path in FINDING_SOURCES:
        try:
            answer = import_string(path)(pairs, now)
        except Exception as exc:
            logger.exception("health findings of %s could not be read", path)
            for pair in pairs:
                found[pair.pk].append(("warning", f"checks of {path} could not be read: {exc}"))
            continue
        for pair_id, findings in answer.items():
            found[pair_id] += [(str(state), reason) for state, reason in findings]
    return found


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


# RunFacts' fields, read as plain rows: a thousand pairs' runs as model instances cost more
# than the page's queries.
_RUN_FIELDS = [f.name for f in fields(RunFacts)]


def _latest_runs(pairs: list[BucketPair]) -> dict[int, RunFacts]:
    """The latest finished and latest succeeded runs of pairs loaded through
    ``_with_latest_runs``, by id (one query)."""
    ids = {p.last_run_id for p in pairs} | {p.last_verdict_run_id for p in pairs}
    rows = ReconcileRun.objects.filter(id__any=ids - {None}).values_list(*_RUN_FIELDS)
    return {row[0]: RunFacts(*row) for row in rows}


def lag_percentiles(
    pair_ids: Iterable[int] | None, since: datetime, until: datetime | None = None
) -> dict[int, tuple[timedelta, ...]]:
    """p50, p95 and p99 of copy lag per pair (of ``pair_ids``; None: every pair) over
    ``[since, until)`` by finish time.

    One query. PostgreSQL computes them over the window with ``percentile_cont``; other
    databases hand the window's lags to stats.percentiles, which interpolates the same way.
    For every pair, the window is read by time alone: one range scan of the time index.
    """
    events = CopyEvent.objects.filter(finished_at__gte=since, status__in=LAG_STATUSES)
    if pair_ids is not None:
        pair_ids = list(pair_ids)
        if not pair_ids:
            return {}
        events = events.filter(pair_id__any=pair_ids)
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
    # Ordered by the interval itself, not its seconds: the same values (to the
    # microsecond), without an expression computed for every row of the window.
    query = (
        "SELECT window_events.pair_id, percentile_cont(%s::double precision[]) "  # noqa: S608
        "WITHIN GROUP (ORDER BY window_events.lag) "
        f"FROM ({sql}) AS window_events GROUP BY window_events.pair_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [list(LAG_PERCENTILES), *params])
        return {pair_id: tuple(values) for pair_id, values in cursor.fetchall()}

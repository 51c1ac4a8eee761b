"""/metrics: a Prometheus collector that reads the database on every scrape.

Nothing is counted in process memory, so every web process answers alike and a restart
loses nothing. A scrape costs seven queries whatever the number of pairs: five for health
(replication.dashboard.facts.pair_health), one grouped sum of the copy totals, one of the
ingest totals. The totals are kept by ingest (replication/ingest/tallies.py), never deleted
by retention, so the counters never go down.

Every series is listed, with its meaning, in the README ("Metrics").
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from replication.dashboard.facts import LAG_STATUSES, PairHealth, pair_health
from replication.dashboard.health import State
from replication.models import CopyStatus, CopyTally, IngestTally, ReconcileRun
from replication.monitoring.lag import cumulative
from replication.restore.status import metric_families as drill_families

PREFIX = "backupsite"
RECONCILE_KINDS = ("missing", "mismatched", "extra", "unverified")


@dataclass
class Snapshot:
    """What one scrape reports, read from the database in a bounded number of queries."""

    pairs: list[PairHealth]
    # pair id -> status -> lag bucket -> (copies, sum of their lags in seconds)
    copies: dict[int, dict[str, dict[int, tuple[int, float]]]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # HTTP status -> count
    rejections: dict[str, int] = field(default_factory=dict)  # reason -> count


def read_snapshot(now: datetime | None = None) -> Snapshot:
    copies: dict = defaultdict(lambda: defaultdict(dict))
    for row in (
        CopyTally.objects.values("pair_id", "status", "lag_bucket")
        .annotate(n=Sum("copies"), seconds=Sum("lag_seconds_sum"))
        .order_by()
    ):
        copies[row["pair_id"]][row["status"]][row["lag_bucket"]] = (row["n"], row["seconds"])
    ingest: dict = defaultdict(dict)
    for row in IngestTally.objects.values("counter", "label").annotate(n=Sum("count")).order_by():
        ingest[row["counter"]][row["label"]] = row["n"]
    return Snapshot(
        pairs=pair_health(now=now),
        copies=copies,
        requests=ingest[IngestTally.Counter.REQUESTS],
        rejections=ingest[IngestTally.Counter.REJECTIONS],
    )


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric families of a snapshot (no I/O)."""
    copies = CounterMetricFamily(
        f"{PREFIX}_copies",
        "Copy results reported by the Lambda, by status (copied, deleted, skipped, failed).",
        labels=["pair", "status"],
    )
    lag = HistogramMetricFamily(
        f"{PREFIX}_copy_lag_seconds",
        "Lag of copies and deletes (finished_at - event_time), in seconds.",
        labels=["pair"],
    )
    open_failures = GaugeMetricFamily(
        f"{PREFIX}_open_failures",
        "Failed copies that nothing newer has resolved.",
        labels=["pair"],
    )
    behind = GaugeMetricFamily(
        f"{PREFIX}_objects_behind",
        "Objects the backup lacks: open failures plus objects the last reconcile found "
        "missing or mismatched, not copied since.",
        labels=["pair"],
    )
    health = GaugeMetricFamily(
        f"{PREFIX}_pair_health",
        "The pair's health: 1 for its current state, 0 for the others.",
        labels=["pair", "state"],
    )
    run_objects = GaugeMetricFamily(
        f"{PREFIX}_reconcile_last_objects",
        "What the pair's latest successful reconcile found, by kind of difference.",
        labels=["pair", "kind"],
    )
    verdict = GaugeMetricFamily(
        f"{PREFIX}_reconcile_last_verdict",
        "The latest successful reconcile's verdict: 1 for it, 0 for the others.",
        labels=["pair", "verdict"],
    )
    finished = GaugeMetricFamily(
        f"{PREFIX}_reconcile_last_timestamp_seconds",
        "When the latest successful reconcile finished (Unix time).",
        labels=["pair"],
    )
    for item in sorted(snapshot.pairs, key=lambda p: p.pair.name):
        name, facts = item.pair.name, item.facts
        by_status = snapshot.copies.get(item.pair.pk, {})
        for status in CopyStatus.values:
            copies.add_metric([name, status], sum(n for n, _ in by_status.get(status, {}).values()))
        lag_counts: dict[int, int] = defaultdict(int)
        lag_sum = 0.0
        for status in LAG_STATUSES:
            for bucket, (n, seconds) in by_status.get(status, {}).items():
                lag_counts[bucket] += n
                lag_sum += seconds
        lag.add_metric([name], cumulative(lag_counts), lag_sum)
        open_failures.add_metric([name], facts.open_failures)
        behind.add_metric([name], facts.open_failures + facts.lacking)
        for state in State:
            health.add_metric([name, state.value], 1 if item.health.state == state else 0)
        run = facts.last_verdict_run
        if run is not None:
            for kind in RECONCILE_KINDS:
                run_objects.add_metric([name, kind], getattr(run, kind))
            for value in ReconcileRun.Verdict.values:
                verdict.add_metric([name, value], 1 if run.verdict == value else 0)
            finished.add_metric([name], (run.finished_at or run.created_at).timestamp())
    requests = CounterMetricFamily(
        f"{PREFIX}_ingest_requests",
        "Requests answered by the ingest API (POST /api/v1/events), by HTTP status.",
        labels=["code"],
    )
    for code, n in sorted(snapshot.requests.items()):
        requests.add_metric([code], n)
    rejections = CounterMetricFamily(
        f"{PREFIX}_ingest_rejections",
        "What the ingest API refused, by reason: requests (unauthenticated, invalid, "
        "too_large, unavailable) and events of accepted batches (unregistered_pair, out_of_scope).",
        labels=["reason"],
    )
    for reason, n in sorted(snapshot.rejections.items()):
        rejections.add_metric([reason], n)
    yield from (copies, lag, open_failures, behind, health, run_objects, verdict, finished)
    yield from (requests, rejections)


class DatabaseCollector:
    def collect(self) -> Iterator[Metric]:
        yield from families(read_snapshot())
        yield from drill_families(PREFIX)  # the restore drills' own series, one query


def exposition() -> bytes:
    """The Prometheus text format of one fresh scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry)

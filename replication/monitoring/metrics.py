"""/metrics: a Prometheus collector that reads the database on every scrape.

Nothing is counted in process memory, so every web process answers alike and a restart
loses nothing. A scrape costs a fixed number of queries whatever the number of pairs: health
(replication.status.facts.pair_health, with the rooms' findings), one grouped sum of the copy
totals, one of the ingest totals, and the protection checks' latest states (the freshness
of the last 30 days is the one health's findings read, at the same instant). The totals are
kept by ingest (replication/ingest/tallies.py), never deleted by retention, so the counters
never go down.

Every series is listed, with its meaning, in the README ("Metrics").
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import BigIntegerField, Sum
from django.db.models.functions import Cast
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    Metric,
)

from replication.evidence.facts import read_once, summaries
from replication.evidence.metrics import freshness_families
from replication.models import CopyStatus, CopyTally, IngestTally, ProtectionState, ReconcileRun
from replication.monitoring.exposition import Family, text
from replication.monitoring.lag import cumulative
from replication.protection.store import latest_states
from replication.restore.status import metric_families as drill_families
from replication.status.facts import LAG_STATUSES, PairHealth, pair_health
from replication.status.health import State

PREFIX = "backupsite"
RECONCILE_KINDS = ("missing", "mismatched", "extra", "unverified")


@dataclass
class Snapshot:
    """What one scrape reports, read from the database in a bounded number of queries."""

    pairs: list[PairHealth]
    now: datetime
    # pair id -> status -> lag bucket -> (copies, sum of their lags in seconds)
    copies: dict[int, dict[str, dict[int, tuple[int, float]]]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # HTTP status -> count
    rejections: dict[str, int] = field(default_factory=dict)  # reason -> count
    freshness: dict = field(default_factory=dict)  # pair id -> evidence.facts.Summary
    guard_lookup_failures: int = 0  # failed guard lookups the Lambda reported
    # pair id -> protection check -> its latest state (replication/protection/)
    protection: dict[int, dict[str, str]] = field(default_factory=dict)


@read_once()  # health's freshness finding and the freshness series read the days once
def read_snapshot(now: datetime | None = None) -> Snapshot:
    now = now or timezone.now()
    copies: dict = defaultdict(lambda: defaultdict(dict))
    # Tuples, not dictionaries: a row per pair, status and lag bucket, tens of thousands. A
    # sum of bigints is numeric in PostgreSQL, each read as a Decimal: cast back, it is not.
    for pair_id, status, lag_bucket, n, seconds in (
        CopyTally.objects.values("pair_id", "status", "lag_bucket")
        .annotate(n=Cast(Sum("copies"), BigIntegerField()), seconds=Sum("lag_seconds_sum"))
        .values_list("pair_id", "status", "lag_bucket", "n", "seconds")
        .order_by()
    ):
        copies[pair_id][status][lag_bucket] = (n, seconds)
    ingest: dict = defaultdict(dict)
    for row in IngestTally.objects.values("counter", "label").annotate(n=Sum("count")).order_by():
        ingest[row["counter"]][row["label"]] = row["n"]
    pairs = pair_health(now=now)
    return Snapshot(
        pairs=pairs,
        now=now,
        copies=copies,
        requests=ingest[IngestTally.Counter.REQUESTS],
        rejections=ingest[IngestTally.Counter.REJECTIONS],
        # The freshness days health read a moment ago (replication/evidence).
        freshness=summaries([p.pair for p in pairs], now),
        guard_lookup_failures=ingest[IngestTally.Counter.GUARD_LOOKUPS].get("failed", 0),
        protection=latest_states(),
    )


def families(snapshot: Snapshot) -> Iterator[Metric | Family]:
    """The metric families of a snapshot (no I/O)."""
    copies = Family(
        "counter",
        f"{PREFIX}_copies",
        "Copy results reported by the Lambda, by status (copied, deleted, skipped, failed, held).",
        ["pair", "status"],
    )
    lag = Family(
        "histogram",
        f"{PREFIX}_copy_lag_seconds",
        "Lag of copies and deletes (finished_at - event_time), in seconds.",
        ["pair"],
    )
    open_failures = Family(
        "gauge",
        f"{PREFIX}_open_failures",
        "Failed copies that nothing newer has resolved.",
        ["pair"],
    )
    behind = Family(
        "gauge",
        f"{PREFIX}_objects_behind",
        "Objects the backup lacks: open failures, and objects a reconcile found missing or "
        "mismatched (or in flight that settled missing) with nothing newer since; the "
        "overview's objects lacking.",
        ["pair"],
    )
    behind_seconds = Family(
        "gauge",
        f"{PREFIX}_behind_seconds",
        "How far behind the backup is: age of the oldest object it lacks, from the event that "
        "should have copied it (or its LastModified); 0 when it lacks nothing.",
        ["pair"],
    )
    health = Family(
        "gauge",
        f"{PREFIX}_pair_health",
        "The pair's health: 1 for its current state, 0 for the others.",
        ["pair", "state"],
    )
    run_objects = Family(
        "gauge",
        f"{PREFIX}_reconcile_last_objects",
        "What the pair's latest successful reconcile found, by kind of difference.",
        ["pair", "kind"],
    )
    verdict = Family(
        "gauge",
        f"{PREFIX}_reconcile_last_verdict",
        "The latest successful reconcile's verdict: 1 for it, 0 for the others.",
        ["pair", "verdict"],
    )
    finished = Family(
        "gauge",
        f"{PREFIX}_reconcile_last_timestamp_seconds",
        "When the latest successful reconcile finished (Unix time).",
        ["pair"],
    )
    # Read once: each is rebuilt on every access, and a thousand pairs ask for them.
    statuses, verdicts = CopyStatus.values, ReconcileRun.Verdict.values
    states = [(state, state.value) for state in State]
    for item in sorted(snapshot.pairs, key=lambda p: p.pair.name):
        name, facts = item.pair.name, item.facts
        by_status = snapshot.copies.get(item.pair.pk, {})
        for status in statuses:
            copies.add_metric([name, status], sum(n for n, _ in by_status.get(status, {}).values()))
        lag_counts: dict[int, int] = defaultdict(int)
        lag_sum = 0.0
        for status in LAG_STATUSES:
            for bucket, (n, seconds) in by_status.get(status, {}).items():
                lag_counts[bucket] += n
                lag_sum += seconds
        lag.add_metric([name], cumulative(lag_counts), lag_sum)
        open_failures.add_metric([name], facts.open_failures)
        behind.add_metric([name], facts.lacking.total)
        behind_by = facts.lacking.behind_by(snapshot.now)
        behind_seconds.add_metric([name], behind_by.total_seconds() if behind_by else 0)
        current = item.health.state
        for state, value in states:
            health.add_metric([name, value], 1 if current == state else 0)
        run = facts.last_verdict_run
        if run is not None:
            for kind in RECONCILE_KINDS:
                run_objects.add_metric([name, kind], getattr(run, kind))
            for value in verdicts:
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
    yield from (copies, lag, open_failures, behind, behind_seconds, health, run_objects)
    yield from (verdict, finished)
    yield protection_family(snapshot)
    lookups = CounterMetricFamily(
        f"{PREFIX}_guard_lookup_failures",
        "Times the Lambda could not read the destructive-change guard's holds and applied "
        "changes without it, as its reports said.",
    )
    lookups.add_metric([], snapshot.guard_lookup_failures)
    yield lookups
    yield from (requests, rejections)
    names = [(p.pair.pk, p.pair.name) for p in sorted(snapshot.pairs, key=lambda p: p.pair.name)]
    yield from freshness_families(names, snapshot.freshness, PREFIX)


def protection_family(snapshot: Snapshot) -> Family:
    family = Family(
        "gauge",
        f"{PREFIX}_protection_check",
        "The latest result of each protection check of the pair: 1 for its state, 0 for the "
        "others (unknown: the setting could not be read).",
        ["pair", "check", "state"],
    )
    states = ProtectionState.values
    for item in sorted(snapshot.pairs, key=lambda p: p.pair.name):
        for check, current in sorted(snapshot.protection.get(item.pair.pk, {}).items()):
            for state in states:
                family.add_metric([item.pair.name, check, state], 1 if current == state else 0)
    return family


def collected() -> Iterator[Metric | Family]:
    """Every family of one fresh scrape."""
    yield from families(read_snapshot())
    yield from drill_families(PREFIX)  # the restore drills' own series, one query


def exposition() -> bytes:
    """The Prometheus text format of one fresh scrape."""
    return text(collected())

"""Totals kept by ingest (see replication/models/tallies.py): running totals for /metrics
and hourly lag histograms for the charts.

On PostgreSQL the totals are advanced inside store.py's single statement (CTEs built here),
so counting costs no extra round trip; elsewhere, and for requests that store nothing, by
one upsert of their own.
"""

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, connection

from replication.dashboard import histogram
from replication.dashboard.windows import bucket_start
from replication.models import CopyEvent, CopyTally, HourlyTally, IngestTally
from replication.models.tallies import SHARDS
from replication.monitoring.lag import bucket_index, bucket_index_sql

logger = logging.getLogger(__name__)

# Why the ingest API refused a request, by its HTTP status; events of an accepted batch that
# no pair backs up are counted as "unregistered_pair", one per event.
REJECTION_REASONS = {
    400: "invalid",
    401: "unauthenticated",
    413: "too_large",
    503: "unavailable",
}
UNREGISTERED_PAIR = "unregistered_pair"
# Events for a pair outside the sending key's scope, one per event.
OUT_OF_SCOPE = "out_of_scope"


@dataclass
class RequestCounts:
    """What one ingest request adds to the request and rejection totals."""

    requests: Counter = field(default_factory=Counter)
    rejections: Counter = field(default_factory=Counter)
    # Guard lookups the Lambda says failed since its last report (the destructive-change guard).
    guard_lookup_failures: int = 0

    @classmethod
    def for_status(cls, status: int) -> "RequestCounts":
        counts = cls(requests=Counter({str(status): 1}))
        if status in REJECTION_REASONS:
            counts.rejections[REJECTION_REASONS[status]] += 1
        return counts

    @classmethod
    def summed(cls, many: Iterable["RequestCounts"]) -> "RequestCounts":
        """What several requests add together (a group of posts stored by one statement)."""
        total = cls()
        for counts in many:
            total.requests.update(counts.requests)
            total.rejections.update(counts.rejections)
            total.guard_lookup_failures += counts.guard_lookup_failures
        return total

    def rows(self) -> list[dict]:
        """Rows for IngestTally, in one fixed order (two requests never lock in opposite order)."""
        rows = [
            {"counter": IngestTally.Counter.REQUESTS.value, "label": label, "n": n}
            for label, n in self.requests.items()
            if n
        ] + [
            {"counter": IngestTally.Counter.REJECTIONS.value, "label": label, "n": n}
            for label, n in self.rejections.items()
            if n
        ]
        if self.guard_lookup_failures:
            rows.append(
                {
                    "counter": IngestTally.Counter.GUARD_LOOKUPS.value,
                    "label": "failed",
                    "n": self.guard_lookup_failures,
                }
            )
        return sorted(rows, key=lambda r: (r["counter"], r["label"]))


def copy_tally_rows(results: Iterable[tuple[int, str, timedelta]]) -> list[tuple]:
    """(pair_id, status, lag_bucket, copies, lag_seconds_sum) from new events' (pair_id,
    status, lag), sorted (pure; the SQL in copy_tally_cte does the same)."""
    totals: dict[tuple[int, str, int], list] = {}
    for pair_id, status, lag in results:
        seconds = lag.total_seconds()
        total = totals.setdefault((pair_id, status, bucket_index(seconds)), [0, 0.0])
        total[0] += 1
        total[1] += seconds
    return [(*key, n, s) for key, (n, s) in sorted(totals.items())]


def hourly_tally_rows(results: Iterable[tuple[int, str, timedelta, datetime]]) -> list[tuple]:
    """(pair_id, hour, status, lag_bucket, copies) from results' (pair_id, status, lag,
    finished_at), sorted (pure; the SQL in hourly_tally_cte does the same)."""
    totals: Counter = Counter()
    for pair_id, status, lag, finished_at in results:
        hour = bucket_start(finished_at, 3600)
        totals[pair_id, hour, status, histogram.bucket_index(lag.total_seconds())] += 1
    return [(*key, n) for key, n in sorted(totals.items())]


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


_SHARD_SQL = f"mod(pg_backend_pid(), {SHARDS})"


def copy_tally_cte(new_events: str) -> str:
    """PostgreSQL: an INSERT adding the rows of CTE ``new_events`` (which returns pair_id,
    status and lag) to CopyTally."""
    table = _q(CopyTally._meta.db_table)
    seconds = "EXTRACT(EPOCH FROM lag)::double precision"
    return (
        f"INSERT INTO {table} (pair_id, status, lag_bucket, shard, copies, lag_seconds_sum) "  # noqa: S608
        f"SELECT pair_id, status, {bucket_index_sql(seconds)}, {_SHARD_SQL}, count(*), "
        f"sum({seconds}) FROM {new_events} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        "ON CONFLICT (pair_id, status, lag_bucket, shard) DO UPDATE SET "
        f"copies = {table}.copies + EXCLUDED.copies, "
        f"lag_seconds_sum = {table}.lag_seconds_sum + EXCLUDED.lag_seconds_sum"
    )


def hourly_tally_cte(new_events: str) -> str:
    """PostgreSQL: an INSERT adding the rows of CTE ``new_events`` (which returns pair_id,
    status, lag and finished_at) to HourlyTally."""
    table = _q(HourlyTally._meta.db_table)
    seconds = "EXTRACT(EPOCH FROM lag)::double precision"
    hour = "date_bin('1 hour', finished_at, 'epoch'::timestamptz)"
    return (
        f"INSERT INTO {table} (pair_id, hour, status, lag_bucket, shard, copies) "  # noqa: S608
        f"SELECT pair_id, {hour}, status, {histogram.bucket_index_sql(seconds)}, "
        f"{_SHARD_SQL}, count(*) FROM {new_events} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
        "ON CONFLICT (pair_id, hour, status, lag_bucket, shard) DO UPDATE SET "
        f"copies = {table}.copies + EXCLUDED.copies"
    )


def ingest_tally_cte() -> str:
    """PostgreSQL: an INSERT adding one JSON parameter of RequestCounts.rows() to IngestTally."""
    table = _q(IngestTally._meta.db_table)
    return (
        f"INSERT INTO {table} (counter, label, shard, count) "  # noqa: S608
        f"SELECT counter, label, {_SHARD_SQL}, n "
        "FROM json_to_recordset(%s) AS c(counter text, label text, n bigint) ORDER BY 1, 2 "
        "ON CONFLICT (counter, label, shard) DO UPDATE SET "
        f"count = {table}.count + EXCLUDED.count"
    )


def add_copies(rows: list[tuple]) -> None:
    """Elsewhere (SQLite): add copy_tally_rows' rows to CopyTally, shard 0."""
    _add_to(CopyTally, ["pair_id", "status", "lag_bucket"], ["copies", "lag_seconds_sum"], rows)


def add_hourly(rows: list[tuple]) -> None:
    """Elsewhere (SQLite): add hourly_tally_rows' rows to HourlyTally, shard 0."""
    hour = HourlyTally._meta.get_field("hour")
    prepared = [
        (pair_id, hour.get_db_prep_save(start, connection), status, bucket, n)
        for pair_id, start, status, bucket, n in rows
    ]
    _add_to(HourlyTally, ["pair_id", "hour", "status", "lag_bucket"], ["copies"], prepared)


def _add_to(model: type, keys: list[str], sums: list[str], rows: list[tuple]) -> None:
    """Elsewhere (SQLite): upsert ``rows`` (the ``keys`` columns' values, then the ``sums``')
    into shard 0 of ``model``'s totals, adding ``sums`` to what is stored."""
    if not rows:
        return
    table = _q(model._meta.db_table)
    columns = ", ".join([*keys, "shard", *sums])
    values = ", ".join(["%s"] * len(keys) + ["0"] + ["%s"] * len(sums))
    added = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({values}) "  # noqa: S608
            f"ON CONFLICT ({', '.join([*keys, 'shard'])}) DO UPDATE SET {added}",
            rows,
        )


def rebuild_hourly(event_model=CopyEvent, tally_model=HourlyTally) -> int:
    """Count every stored event into the hourly tallies from scratch; return rows written.

    For the migration that introduced them (which passes its historical models) and for
    benchmarks that fill events by SQL. Pair by pair, so memory stays bounded.
    """
    tally_model.objects.all().delete()
    written = 0
    for pair_id in event_model.objects.values_list("pair_id", flat=True).distinct().order_by():
        results = (
            event_model.objects.filter(pair_id=pair_id)
            .values_list("pair_id", "status", "lag", "finished_at")
            .order_by()
            .iterator(chunk_size=20_000)
        )
        rows = [
            tally_model(pair_id=p, hour=hour, status=status, lag_bucket=bucket, copies=n)
            for p, hour, status, bucket, n in hourly_tally_rows(results)
        ]
        tally_model.objects.bulk_create(rows, batch_size=5_000)
        written += len(rows)
    return written


def add_requests(counts: RequestCounts) -> None:
    """Add one request's counts, in a statement of its own."""
    rows = counts.rows()
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(ingest_tally_cte(), [json.dumps(rows)])
        return
    _add_to(
        IngestTally,
        ["counter", "label"],
        ["count"],
        [(r["counter"], r["label"], r["n"]) for r in rows],
    )


def add_requests_quietly(counts: RequestCounts) -> None:
    """add_requests for a response already decided: a failure to count is logged, never
    turned into an error for the client (the database may be why it was refused)."""
    try:
        add_requests(counts)
    except DatabaseError:
        logger.warning("ingest: could not count a request (database unavailable)")

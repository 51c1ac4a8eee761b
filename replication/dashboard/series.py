"""Time series for the charts: one grouped query per chart, whatever the number of events.

On PostgreSQL the database buckets the rows and computes the percentiles
(``percentile_cont``), reading only the window through ``event_pair_finished_idx``. Other
databases (SQLite, the laptop default) get the rows and bucket them in Python with the same
maths (``stats.bucketise``); that path is for small local databases only.
"""

from collections import defaultdict
from datetime import UTC, datetime

from django.db import connection, transaction

from replication.dashboard.windows import (
    COPIED,
    DELETED,
    FAILED,
    SPARKLINE_WINDOW,
    Bucket,
    Window,
    bucketise,
)
from replication.models import CopyEvent

_SERIES_SQL = """
SELECT pair_id,
       date_bin(make_interval(secs => %(size)s), finished_at, 'epoch'::timestamptz) AS bucket,
       count(*) FILTER (WHERE status = %(copied)s) AS copies,
       count(*) FILTER (WHERE status = %(failed)s) AS failures,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY lag)
           FILTER (WHERE status IN (%(copied)s, %(deleted)s)) AS lag
FROM {table}
WHERE pair_id = ANY(%(pairs)s) AND finished_at >= %(start)s AND finished_at <= %(now)s
GROUP BY 1, 2
"""


def series_by_pair(pair_ids: list[int], window: Window, now: datetime) -> dict[int, list[Bucket]]:
    """Every bucket of ``window`` for each pair (empty buckets included), oldest first."""
    if not pair_ids:
        return {}
    start = window.start(now)
    if connection.vendor == "postgresql":
        return _postgres_series(pair_ids, window, start, now)
    rows = defaultdict(list)
    events = CopyEvent.objects.filter(
        pair_id__in=pair_ids, finished_at__gte=start, finished_at__lte=now
    ).values_list("pair_id", "finished_at", "lag", "status")
    for pair_id, finished_at, lag, status in events.order_by():
        rows[pair_id].append((finished_at, lag.total_seconds(), status))
    return {pair_id: bucketise(rows[pair_id], window, now) for pair_id in pair_ids}


def _postgres_series(
    pair_ids: list[int], window: Window, start: datetime, now: datetime
) -> dict[int, list[Bucket]]:
    result = {pair_id: [Bucket(s) for s in window.buckets(now)] for pair_id in pair_ids}
    index = {bucket.start: i for i, bucket in enumerate(next(iter(result.values())))}
    sql = _SERIES_SQL.format(table=connection.ops.quote_name(CopyEvent._meta.db_table))
    params = {
        "size": window.bucket_seconds,
        "copied": COPIED,
        "failed": FAILED,
        "deleted": DELETED,
        "pairs": list(pair_ids),
        "start": start,
        "now": now,
    }
    # Sorting intervals (not numeric epochs) and in memory (a day of events for every pair
    # overflows the default 4 MB work_mem and spills to disk) halves the query's time.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(sql, params)
        for pair_id, start, copies, failures, lag in cursor.fetchall():
            i = index.get(start.astimezone(UTC))
            if i is None:
                continue
            bucket = result[pair_id][i]
            bucket.copies, bucket.failures = copies, failures
            if lag is not None:
                bucket.p50, bucket.p95, bucket.p99 = (v.total_seconds() for v in lag)
    return result


def sparklines(pair_ids: list[int], now: datetime) -> dict[int, list[Bucket]]:
    """The overview's 24 h: hourly buckets per pair, from one query."""
    return series_by_pair(pair_ids, SPARKLINE_WINDOW, now)

"""Time series for the charts: one grouped query per chart, whatever the number of events.

Windows cut into whole hours (a pair's 7 and 30 days) read the hourly tallies ingest keeps
(a lag histogram per pair, hour and status): at most a few rows per hour, however many
events there were, and percentiles estimated from the histogram
(replication/dashboard/histogram.py). The overview, which reads every pair's day, takes
closed hours from their roll-up (HourlyTotal, one row per pair and hour) and only what is
not folded yet from the tallies.

Finer windows (1 h, 24 h) read the events themselves, exactly. On PostgreSQL the database
buckets the rows and computes the percentiles (``percentile_cont``), reading only the window
through ``event_pair_finished_idx``. Other databases (SQLite, the laptop default) get the
rows and bucket them in Python with the same maths (``stats.bucketise``); that path is for
small local databases only.
"""

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q, Sum

from replication.dashboard import histogram
from replication.dashboard.windows import (
    COPIED,
    DELETED,
    FAILED,
    LAG_STATUSES,
    SPARKLINE_WINDOW,
    Bucket,
    Window,
    bucketise,
)
from replication.models import CopyEvent, HourlyTally, HourlyTotal
from replication.models.tallies import FOLDED
from replication.status.facts import lag_percentiles

HOUR = timedelta(hours=1)

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
    if _whole_hours(window):
        return _from_hourly_tallies(pair_ids, window, now)
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


def window_lag(pair_id: int, window: Window, now: datetime) -> tuple[timedelta, ...] | None:
    """p50, p95 and p99 of the pair's lag over the whole window (one query): estimated from
    the hourly tallies where the window's buckets are whole hours, exact otherwise."""
    if not _whole_hours(window):
        return lag_percentiles([pair_id], since=window.start(now)).get(pair_id)
    start = window.start(now)
    whole = int((now - start).total_seconds()) + 1  # one slot holds the whole window
    rows = _tally_rows([pair_id], start, now, whole)
    values = histogram.percentiles_of_sorted(*rows[0][4:]) if rows else None
    return tuple(timedelta(seconds=v) for v in values) if values else None


def _whole_hours(window: Window) -> bool:
    return window.bucket % HOUR == timedelta(0)


def _from_hourly_tallies(
    pair_ids: list[int], window: Window, now: datetime
) -> dict[int, list[Bucket]]:
    starts = window.buckets(now)
    result = {pair_id: [Bucket(start) for start in starts] for pair_id in pair_ids}
    rows = _tally_rows(pair_ids, starts[0], now, window.bucket_seconds)
    for pair_id, slot, copies, failures, indexes, counts in rows:
        if not 0 <= slot < len(starts):
            continue
        bucket = result[pair_id][slot]
        bucket.copies, bucket.failures = copies, failures
        values = histogram.percentiles_of_sorted(indexes, counts)
        if values:
            bucket.p50, bucket.p95, bucket.p99 = values
    return result


# Per pair and slot of ``size`` seconds from ``start``: copies, failures, and the lag
# histogram (bucket indexes in order, with their counts). One grouping, so one sort: a lag
# bucket counted by several rows (shards, copied and deleted, the hours of a longer slot)
# comes back once per row, and _tally_rows sums those neighbours in Python (cheaper than a
# second grouping in the database, which doubled the overview's sparkline query). The slot
# is counted in double precision (date_part; EXTRACT's numeric is slower), and returned as a
# number: a timestamp per row would cost more to parse than the rest of the row.
_TALLY_SQL = """
SELECT pair_id,
       floor((date_part('epoch', hour) - date_part('epoch', %(start)s::timestamptz))
             / %(size)s)::int AS slot,
       coalesce(sum(copies) FILTER (WHERE status = %(copied)s), 0)::bigint,
       coalesce(sum(copies) FILTER (WHERE status = %(failed)s), 0)::bigint,
       coalesce(array_agg(lag_bucket ORDER BY lag_bucket) FILTER (WHERE {lagged}), '{{}}'),
       coalesce(array_agg(copies ORDER BY lag_bucket) FILTER (WHERE {lagged}), '{{}}')
FROM {table}
WHERE pair_id = ANY(%(pairs)s) AND hour >= %(start)s AND hour <= %(now)s {unfolded}
GROUP BY 1, 2
"""
# Only the pair-hours with rows not folded yet, read whole (folded rows too).
_UNFOLDED = """AND (pair_id, hour) IN (
    SELECT pair_id, hour FROM {table}
    WHERE shard < %(folded)s AND pair_id = ANY(%(pairs)s) AND hour >= %(start)s AND hour <= %(now)s)
"""
_LAGGED = "status IN (%(copied)s, %(deleted)s) AND copies > 0"


def _tally_rows(
    pair_ids: list[int], start: datetime, now: datetime, size: int, unfolded: bool = False
) -> list[tuple]:
    """(pair_id, slot, copies, failures, lag bucket indexes, their counts) per pair and slot;
    with ``unfolded``, only from the pair-hours that have rows not folded yet."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(HourlyTally._meta.db_table)
        only = _UNFOLDED.format(table=table) if unfolded else ""
        sql = _TALLY_SQL.format(table=table, lagged=_LAGGED, unfolded=only)
        params = {
            "pairs": list(pair_ids),
            "start": start,
            "now": now,
            "size": size,
            "copied": COPIED,
            "failed": FAILED,
            "deleted": DELETED,
            "folded": FOLDED,
        }
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [
                (pair_id, slot, copies, failures, *histogram.merged(indexes, counts))
                for pair_id, slot, copies, failures, indexes, counts in cursor.fetchall()
            ]
    # Elsewhere (SQLite, small local databases): the same sums in Python.
    slots: dict[tuple[int, int], list] = {}
    rows = list(
        HourlyTally.objects.filter(pair_id__any=pair_ids, hour__gte=start, hour__lte=now)
        .values_list("pair_id", "hour", "status", "lag_bucket", "copies", "shard")
        .order_by()
    )
    if unfolded:
        wanted = {(pair_id, hour) for pair_id, hour, *_, shard in rows if shard < FOLDED}
        rows = [row for row in rows if (row[0], row[1]) in wanted]
    for pair_id, hour, status, lag_bucket, copies, _ in rows:
        slot = int((hour - start).total_seconds() // size)
        entry = slots.setdefault((pair_id, slot), [0, 0, Counter()])
        entry[0] += copies if status == COPIED else 0
        entry[1] += copies if status == FAILED else 0
        if status in LAG_STATUSES:
            entry[2][lag_bucket] += copies
    result = []
    for (pair_id, slot), (copies, failures, lags) in slots.items():
        indexes = sorted(lags)
        result.append((pair_id, slot, copies, failures, indexes, [lags[i] for i in indexes]))
    return result


def sparklines(pair_ids: list[int], now: datetime) -> dict[int, list[Bucket]]:
    """The overview's 24 h: hourly buckets per pair, oldest first (empty ones included).

    Closed hours come from HourlyTotal, one row per pair and hour; an hour that has tally
    rows not folded yet (the current one, or late reports) is read from its tallies whole,
    so every bucket is exact at every moment (replication/ingest/folding.py).
    """
    if not pair_ids:
        return {}
    starts = SPARKLINE_WINDOW.buckets(now)
    slot_of = {start: i for i, start in enumerate(starts)}
    result = {pair_id: [Bucket(start) for start in starts] for pair_id in pair_ids}
    totals = HourlyTotal.objects.filter(pair_id__any=pair_ids, hour__gte=starts[0], hour__lte=now)
    for pair_id, hour, copies, failures, *lags in totals.values_list(
        "pair_id", "hour", "copies", "failures", "lag_p50", "lag_p95", "lag_p99"
    ).order_by():
        slot = slot_of.get(hour)
        if slot is not None:
            bucket = result[pair_id][slot]
            bucket.copies, bucket.failures = copies, failures
            bucket.p50, bucket.p95, bucket.p99 = lags
    for pair_id, slot, copies, failures, indexes, counts in _tally_rows(
        pair_ids, starts[0], now, SPARKLINE_WINDOW.bucket_seconds, unfolded=True
    ):
        if 0 <= slot < len(starts):
            bucket = result[pair_id][slot]
            bucket.copies, bucket.failures = copies, failures
            bucket.p50, bucket.p95, bucket.p99 = histogram.percentiles_of_sorted(
                indexes, counts
            ) or (None, None, None)
    return result


def day_totals(pair_ids: list[int], now: datetime) -> dict[int, tuple[int, int]]:
    """Copies and failures per pair over the sparkline's 24 h (the same hours, so a row's
    figures are the sum of its sparkline's buckets), no histograms, so the overview can
    count every pair and draw only the page's: the closed hours' HourlyTotal rows plus the
    tallies not folded yet (two disjoint parts, each summed in the database)."""
    if not pair_ids:
        return {}
    start, last = SPARKLINE_WINDOW.buckets(now)[0], SPARKLINE_WINDOW.buckets(now)[-1]
    folded = (
        HourlyTotal.objects.filter(pair_id__any=pair_ids, hour__gte=start, hour__lte=last)
        .values("pair_id")
        .annotate(copied=Sum("copies"), failed=Sum("failures"))
    )
    unfolded = (
        HourlyTally.objects.filter(
            pair_id__any=pair_ids, hour__gte=start, hour__lte=last, shard__lt=FOLDED
        )
        .values("pair_id")
        .annotate(
            copied=Sum("copies", filter=Q(status=COPIED), default=0),
            failed=Sum("copies", filter=Q(status=FAILED), default=0),
        )
    )
    totals: dict[int, tuple[int, int]] = {}
    for part in (folded, unfolded):
        for row in part.order_by():
            copied, failed = totals.get(row["pair_id"], (0, 0))
            totals[row["pair_id"]] = (copied + int(row["copied"]), failed + int(row["failed"]))
    return totals

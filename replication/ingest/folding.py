"""Closed hours' tallies folded into one row per bucket and rolled up into HourlyTotal.

Ingest spreads an hour of a pair over up to SHARDS rows per lag bucket (one per database
connection). Once the hour is over, this folds each bucket's shards into one row in shard
FOLDED and writes the hour's HourlyTotal from the folded rows, in one transaction per hour:
so an hour's HourlyTotal is always exactly the sum of its folded rows, and readers add what
is not folded yet (the current hour, and reports that arrived late) from HourlyTally itself
(replication/dashboard/series.py). A late report starts an unfolded shard again; the next
fold adds it.

The fold takes the unfolded rows with ``DELETE ... RETURNING``: on PostgreSQL an ingest
upsert of a row being folded waits for the fold's commit, then inserts the row anew
(unfolded), so no count is lost or counted twice.
"""

from collections import Counter, defaultdict
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from replication.dashboard import histogram
from replication.dashboard.windows import COPIED, FAILED, LAG_STATUSES, bucket_start
from replication.models import HourlyTally, HourlyTotal
from replication.models.tallies import FOLDED
from replication.rows import insert_rows

_TALLY_COLUMNS = ["pair", "hour", "status", "lag_bucket", "shard", "copies"]


def fold_closed_hours(now: datetime | None = None) -> int:
    """Fold and roll up every closed hour with unfolded rows, oldest first, each hour in a
    transaction of its own; return how many hours."""
    current = bucket_start(now or timezone.now(), 3600)
    hours = (
        HourlyTally.objects.filter(shard__lt=FOLDED, hour__lt=current)
        .values_list("hour", flat=True)
        .distinct()
        .order_by("hour")
    )
    folded = 0
    for hour in list(hours):
        with transaction.atomic():
            fold_hour(hour)
        folded += 1
    return folded


def fold_hour(hour: datetime) -> None:
    """Fold ``hour``'s unfolded rows into shard FOLDED and rewrite the HourlyTotal of each
    pair they belong to (inside the caller's transaction)."""
    table = connection.ops.quote_name(HourlyTally._meta.db_table)
    hour_value = HourlyTally._meta.get_field("hour").get_db_prep_save(hour, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE shard < %s AND hour = %s "  # noqa: S608
            "RETURNING pair_id, status, lag_bucket, copies",
            [FOLDED, hour_value],
        )
        moved = cursor.fetchall()
    if not moved:
        return
    sums: Counter = Counter()
    for pair_id, status, lag_bucket, copies in moved:
        sums[(pair_id, status, lag_bucket)] += copies
    fields = [HourlyTally._meta.get_field(name) for name in _TALLY_COLUMNS]
    rows = [
        (pair_id, hour_value, status, lag_bucket, FOLDED, copies)
        for (pair_id, status, lag_bucket), copies in sorted(sums.items())
    ]
    insert_rows(
        HourlyTally,
        fields,
        rows,
        "ON CONFLICT (pair_id, hour, status, lag_bucket, shard) DO UPDATE SET "
        f"copies = {table}.copies + excluded.copies",
    )
    pairs = sorted({pair_id for pair_id, *_ in moved})
    folded = HourlyTally.objects.filter(pair_id__any=pairs, hour=hour, shard=FOLDED)
    HourlyTotal.objects.bulk_create(
        totals(hour, folded.values_list("pair_id", "status", "lag_bucket", "copies")),
        update_conflicts=True,
        unique_fields=["pair", "hour"],
        update_fields=["copies", "failures", "lag_p50", "lag_p95", "lag_p99"],
    )


def totals(hour: datetime, rows) -> list[HourlyTotal]:
    """HourlyTotal per pair from one hour's (pair_id, status, lag_bucket, copies) rows (pure)."""
    copies: Counter = Counter()
    failures: Counter = Counter()
    lags: dict[int, Counter] = defaultdict(Counter)
    for pair_id, status, lag_bucket, n in rows:
        copies[pair_id] += n if status == COPIED else 0
        failures[pair_id] += n if status == FAILED else 0
        if status in LAG_STATUSES and n > 0:
            lags[pair_id][lag_bucket] += n
    result = []
    for pair_id in sorted(copies.keys() | failures.keys() | lags.keys()):
        values = histogram.percentiles(lags[pair_id])
        p50, p95, p99 = values if values else (None, None, None)
        result.append(
            HourlyTotal(
                pair_id=pair_id,
                hour=hour,
                copies=copies[pair_id],
                failures=failures[pair_id],
                lag_p50=p50,
                lag_p95=p95,
                lag_p99=p99,
            )
        )
    return result

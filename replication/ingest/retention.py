"""Retention and upkeep of what ingest writes: per-event rows are kept EVENT_RETENTION_DAYS,
then deleted with their hours' tallies; closed hours' tally shards are folded into one row.

Age is the event's ``finished_at``, the time the dashboard's windows are drawn on, so what is
kept is exactly the history the dashboard can show. Each object's current state
(ObjectState) is kept whatever its age: it is the backup's present truth, not its history.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from replication.dashboard.windows import bucket_start
from replication.models import BucketPair, CopyEvent, HourlyTally

BATCH_SIZE = 5000
HOUR = timedelta(hours=1)


def purge_expired_events(now: datetime | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Delete events finished more than EVENT_RETENTION_DAYS before ``now``, and the hourly
    tallies of hours wholly before that; return how many events."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.EVENT_RETENTION_DAYS)
    deleted = 0
    # Pair by pair, so each lookup is a range scan of event_pair_finished_idx (no index of
    # its own to slow every insert), and in small batches, each its own transaction: a
    # months-long backlog never holds a huge lock while the ingest API keeps inserting.
    for pair_id in BucketPair.objects.values_list("pk", flat=True):
        expired = CopyEvent.objects.filter(pair_id=pair_id, finished_at__lt=cutoff)
        while batch := list(
            expired.order_by("finished_at").values_list("pk", flat=True)[:batch_size]
        ):
            count, _ = CopyEvent.objects.filter(pk__in=batch).delete()
            deleted += count
        HourlyTally.objects.filter(pair_id=pair_id, hour__lte=cutoff - HOUR).delete()
    return deleted


def fold_hourly_shards(now: datetime | None = None) -> int:
    """Fold the shards of each closed hour's tallies into shard 0; return rows removed.

    Concurrent ingest spreads an hour over up to SHARDS rows per bucket; once the hour is
    over (and an hour more, for late reports) one row is enough, and the charts read fewer.
    A late report after the fold starts a shard again, folded at the next run. PostgreSQL
    only: elsewhere ingest writes shard 0 alone.
    """
    if connection.vendor != "postgresql":
        return 0
    before = bucket_start(now or timezone.now(), 3600) - HOUR
    table = connection.ops.quote_name(HourlyTally._meta.db_table)
    # One statement: the deleted shards and their sum in shard 0 commit together.
    sql = (
        f"WITH folded AS (DELETE FROM {table} WHERE shard <> 0 AND hour < %s "  # noqa: S608
        "RETURNING pair_id, hour, status, lag_bucket, copies), "
        f"added AS (INSERT INTO {table} (pair_id, hour, status, lag_bucket, shard, copies) "
        "SELECT pair_id, hour, status, lag_bucket, 0, sum(copies) FROM folded "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
        "ON CONFLICT (pair_id, hour, status, lag_bucket, shard) DO UPDATE SET "
        f"copies = {table}.copies + EXCLUDED.copies) "
        "SELECT count(*) FROM folded"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [before])
        return cursor.fetchone()[0]

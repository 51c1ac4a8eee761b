"""Retention of what ingest writes: per-event rows are kept EVENT_RETENTION_DAYS, then
deleted with their hours' tallies and totals (closed hours are folded by folding.py).

Age is the event's ``finished_at``, the time the dashboard's windows are drawn on, so what is
kept is exactly the history the dashboard can show. Each object's current state
(ObjectState) is kept whatever its age: it is the backup's present truth, not its history.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from replication.models import BucketPair, CopyEvent, HourlyTally, HourlyTotal

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
        HourlyTotal.objects.filter(pair_id=pair_id, hour__lte=cutoff - HOUR).delete()
    return deleted

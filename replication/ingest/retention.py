"""Retention of per-event rows: they are kept EVENT_RETENTION_DAYS, then deleted.

Each object's current state (ObjectState) is kept whatever its age: it is the backup's
present truth, not its history.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from replication.models import CopyEvent

BATCH_SIZE = 5000


def purge_expired_events(now: datetime | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Delete events received more than EVENT_RETENTION_DAYS before ``now``; return how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.EVENT_RETENTION_DAYS)
    deleted = 0
    # Small batches, each its own transaction: a months-long backlog never holds one huge
    # lock or one huge transaction while the ingest API keeps inserting.
    while True:
        batch = list(
            CopyEvent.objects.filter(received_at__lt=cutoff)
            .order_by("received_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            return deleted
        count, _ = CopyEvent.objects.filter(pk__in=batch).delete()
        deleted += count

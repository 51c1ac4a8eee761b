"""What the Lambda reported: every copy result, and each object's current state.

Written by replication/ingest/store.py, read by the dashboard. Every column the ingest API
fills is validated first in replication/ingest/schema.py; the constraints here are the last
word, so no code path can store what the API would refuse.
"""

from django.db import models
from django.db.models import F, Q

from replication.models.pairs import BucketPair

# The fixed width of ``sequencer_order`` (see replication/ingest/ordering.py).
SEQUENCER_ORDER_REGEX = r"^[0-9A-F]{32}$"


class CopyStatus(models.TextChoices):
    """What the Lambda did with one S3 event.

    copied: the object is in the backup.  deleted: the source object is gone and so, on a
    pair that mirrors deletes, is its backup copy.  skipped: the backup was left as it is: a
    newer write overtook the event, or a delete on a pair that keeps what the source deleted
    (``event_name`` says which).  failed: the backup may be missing or stale; a later result
    for the same object (a retry, a newer write) supersedes it.
    """

    COPIED = "copied"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"


class CopyResult(models.Model):
    """The fields an event row and a current-state row share."""

    key = models.CharField(max_length=1024, help_text="Source key, decoded.")
    version_id = models.CharField(max_length=1024, blank=True)
    event_name = models.CharField(max_length=100, help_text="e.g. ObjectCreated:Put")
    event_time = models.DateTimeField(help_text="When S3 says the change happened.")
    sequencer = models.CharField(max_length=32, help_text="S3's sequencer, as sent.")
    # Right-padded to a fixed width so that string order is S3's event order.
    sequencer_order = models.CharField(max_length=32, editable=False)
    attempt = models.PositiveSmallIntegerField(default=1)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    etag = models.CharField("ETag", max_length=128, blank=True)
    status = models.CharField(max_length=10, choices=CopyStatus)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    finished_at = models.DateTimeField()

    class Meta:
        abstract = True


def _result_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(
            name=f"{prefix}_status_valid", condition=Q(status__in=CopyStatus.values)
        ),
        models.CheckConstraint(
            name=f"{prefix}_sequencer_order_fixed_width",
            condition=Q(sequencer_order__regex=SEQUENCER_ORDER_REGEX),
        ),
        models.CheckConstraint(name=f"{prefix}_attempt_positive", condition=Q(attempt__gte=1)),
    ]


class CopyEvent(CopyResult):
    """One result per S3 event and attempt, as reported; kept EVENT_RETENTION_DAYS."""

    # No index of its own: the composite indexes below all start with pair.
    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    started_at = models.DateTimeField(null=True, blank=True)
    # finished_at - event_time, stored so lag over a window is a plain indexed range scan.
    lag = models.DurationField()
    request_id = models.CharField(max_length=128, blank=True)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-finished_at", "-id"]
        constraints = [
            # A repeated post (Lambda retrying its report, a sender replaying a batch) is
            # stored once, even when two copies race: ingest inserts with ON CONFLICT DO NOTHING.
            models.UniqueConstraint(
                name="event_unique_result",
                fields=["pair", "key", "sequencer_order", "event_name", "status", "attempt"],
            ),
            *_result_constraints("event"),
            models.CheckConstraint(
                name="event_finished_after_started",
                condition=Q(started_at__isnull=True) | Q(finished_at__gte=F("started_at")),
            ),
        ]
        indexes = [
            # Pair page: latest events (WHERE pair_id = %s ORDER BY finished_at DESC LIMIT n);
            # lag over a window (WHERE pair_id = %s AND finished_at >= %s); and retention
            # (WHERE pair_id = %s AND finished_at < %s), which therefore needs no index of
            # its own to slow every insert.
            models.Index(name="event_pair_finished_idx", fields=["pair", "-finished_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.key} ({self.event_name}, attempt {self.attempt})"


class ObjectState(CopyResult):
    """The newest result for each (pair, key): greatest sequencer, then attempt, then finish.

    Ingest upserts it with a conditional ON CONFLICT DO UPDATE, so whatever order results
    arrive in, and however posts interleave, the newest wins. Kept when events expire.
    """

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="object_states", db_index=False
    )
    updated_at = models.DateTimeField(help_text="When the winning result was received.")

    class Meta:
        ordering = ["pair", "key"]
        constraints = [
            models.UniqueConstraint(name="object_state_unique_key", fields=["pair", "key"]),
            *_result_constraints("object_state"),
        ]
        indexes = [
            # Open failures per pair, newest first: overview counts and the pair page's list
            # (WHERE pair_id = %s AND status = 'failed' ORDER BY finished_at DESC).
            models.Index(
                name="object_state_failures_idx",
                fields=["pair", "-finished_at"],
                condition=Q(status=CopyStatus.FAILED),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key}: {self.status}"

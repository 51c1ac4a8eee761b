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
    for the same object (a retry, a newer write) supersedes it.  held: a delete or an
    overwrite the destructive-change guard kept from the backup while it held the pair.
    """

    COPIED = "copied"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"
    HELD = "held"


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
            # Pair page, while the guard holds: the held changes (WHERE pair_id = %s AND
            # status = 'held' AND finished_at >= %s); partial, so it is small and ordinary
            # inserts skip it.
            models.Index(
                name="event_held_idx",
                fields=["pair", "-finished_at"],
                condition=Q(status="held"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.key} ({self.event_name}, attempt {self.attempt})"


class Finding(models.TextChoices):
    """What the latest reconcile (or its repair) established about an object."""

    IN_SYNC = "in_sync", "in sync"
    MISSING = "missing"
    MISMATCHED = "mismatched"
    REPAIRED = "repaired", "copied by repair"


# The findings that say the backup lacks or contradicts the source.
LACKING_FINDINGS = (Finding.MISSING, Finding.MISMATCHED)


class ObjectStateQuerySet(models.QuerySet):
    def open_failures(self):
        """Failed copies that nothing newer resolved (no later event, no later finding)."""
        return self.filter(status=CopyStatus.FAILED).filter(
            Q(finding_at__isnull=True) | Q(finding_at__lt=F("event_time"))
        )

    def lacking(self):
        """Objects the latest reconcile found missing or mismatched, with no event since."""
        return self.filter(finding__in=LACKING_FINDINGS).filter(
            Q(event_time__isnull=True) | Q(event_time__lte=F("finding_at"))
        )


class ObjectState(CopyResult):
    """Everything known about one object of a pair: its newest event, and what the latest
    reconcile found.

    ``key`` is the source key as S3 names it (prefix included), like ``CopyEvent.key`` and
    ``Discrepancy.key``: one convention for every table, page, export and alert.

    Two writers, never in each other's way:

    - ingest upserts the event columns (those of ``CopyResult``) with a conditional
      ON CONFLICT DO UPDATE, so whatever order results arrive in, the newest by sequencer wins;
    - reconcile and repair write the ``finding`` columns, in bulk, for the objects they
      found lacking, repaired, or found in sync while an older problem was open
      (replication/reconcile/findings.py); a finding never replaces one with a later
      ``finding_at`` (a redelivered range of an older run changes nothing).

    A row may hold only a finding (an object written without an event, found missing), in
    which case its event columns are empty. Which side is current is a matter of time: a
    finding made after the event happened (``finding_at >= event_time``) supersedes it; an
    event that happened after the run listed the object supersedes the finding. See
    ``replication.objects`` for the rule, and the ``open_failures`` / ``lacking`` queries.
    """

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="object_states", db_index=False
    )
    # The event columns are empty on a row that only a reconcile has written.
    event_name = models.CharField(max_length=100, blank=True, help_text="e.g. ObjectCreated:Put")
    event_time = models.DateTimeField(null=True, blank=True)
    sequencer = models.CharField(max_length=32, blank=True)
    sequencer_order = models.CharField(max_length=32, null=True, editable=False)  # noqa: DJ001
    status = models.CharField(max_length=10, choices=CopyStatus, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the winning event was received."
    )

    finding = models.CharField(max_length=16, choices=Finding, blank=True)
    finding_run = models.ForeignKey(
        "replication.ReconcileRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    # When that run began listing: anything that happened to the object before then, the
    # run saw.
    finding_at = models.DateTimeField(null=True, blank=True)
    # The source object's LastModified as the run listed it: its age is how far behind the
    # backup is when it lacks the object.
    source_modified_at = models.DateTimeField(null=True, blank=True)
    # When a run first found it lacking; kept while consecutive runs still do.
    lacking_since = models.DateTimeField(null=True, blank=True)

    objects = ObjectStateQuerySet.as_manager()

    class Meta:
        ordering = ["pair", "key"]
        constraints = [
            models.UniqueConstraint(name="object_state_unique_key", fields=["pair", "key"]),
            models.CheckConstraint(
                name="object_state_status_valid",
                condition=Q(status__in=[*CopyStatus.values, ""]),
            ),
            models.CheckConstraint(
                name="object_state_sequencer_order_fixed_width",
                condition=Q(sequencer_order__isnull=True)
                | Q(sequencer_order__regex=SEQUENCER_ORDER_REGEX),
            ),
            models.CheckConstraint(
                name="object_state_attempt_positive", condition=Q(attempt__gte=1)
            ),
            # An event, a finding, or both: never an empty row.
            models.CheckConstraint(
                name="object_state_has_event_or_finding",
                condition=(
                    Q(status__in=CopyStatus.values, event_time__isnull=False)
                    | Q(finding__in=Finding.values, finding_at__isnull=False)
                ),
            ),
            models.CheckConstraint(
                name="object_state_finding_valid",
                condition=Q(finding__in=[*Finding.values, ""]),
            ),
        ]
        indexes = [
            # Open failures per pair, newest first: overview counts and the pair page's list
            # (WHERE pair_id = %s AND status = 'failed' ORDER BY finished_at DESC).
            models.Index(
                name="object_state_failures_idx",
                fields=["pair", "-finished_at"],
                condition=Q(status=CopyStatus.FAILED),
            ),
            # Objects a reconcile found lacking, oldest first: counts, "behind by" and lists.
            models.Index(
                name="object_state_lacking_idx",
                fields=["pair", "source_modified_at"],
                condition=Q(finding__in=LACKING_FINDINGS),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key}: {self.current}"

    @property
    def finding_is_current(self) -> bool:
        """True when the finding was made after the event it could have seen."""
        return bool(self.finding) and (
            self.event_time is None or self.finding_at >= self.event_time
        )

    @property
    def current(self) -> str:
        """The newest thing known: the finding if it came after the event, else the event."""
        return self.finding if self.finding_is_current else self.status

"""What the Lambda reported: every copy result, and each object's current state.

Written by replication/ingest/store.py, read by the dashboard. Every column the ingest API
fills is validated first in replication/ingest/schema.py; the constraints here are the last
word, so no code path can store what the API would refuse.
"""

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils.deconstruct import deconstructible

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
            # The admin's list of copy events, all pairs, newest first: ORDER BY finished_at
            # DESC, id DESC LIMIT 100, the model's ordering. Without it the page sorts every
            # row (2.7 s at 1,000,000 events); with it, it reads 100 index entries.
            models.Index(name="event_finished_idx", fields=["-finished_at", "-id"]),
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
    DELETED = "deleted", "deleted by repair"  # an extra, on a pair that mirrors deletes
    # A held change released with "keep the backup as it is": the backup keeps its copy
    # (``kept_etag``) until the source changes the key again (after ``kept_at``).
    KEPT = "kept"


# The findings that say the backup lacks or contradicts the source.
LACKING_FINDINGS = (Finding.MISSING, Finding.MISMATCHED)


# A failed copy that nothing newer resolved: no finding since the write it failed to copy.
OPEN_FAILURE = Q(status=CopyStatus.FAILED) & (
    Q(finding_at__isnull=True) | Q(event_time__gt=F("finding_at"))
)
# What the backup lacks (see replication/status/lacking.py): an open failure, or a lacking
# finding that no newer event superseded. A failed event never supersedes a lacking finding:
# both say the object is lacking. Held changes and kept keys are neither, so never lacking.
# A success supersedes a finding when the copy finished after the run listed the key: a
# retry of an old event that succeeds later resolves the finding made in between, although
# its event time is older (``ObjectState.event_is_newer`` is the same rule in Python).
FOUND_LACKING = Q(finding__in=LACKING_FINDINGS) & (
    Q(sequencer_order__isnull=True)
    | Q(status=CopyStatus.FAILED)
    | Q(finished_at__lte=F("finding_at"))
)
LACKING = OPEN_FAILURE | FOUND_LACKING


# Every column the count of what the backup lacks reads (replication/status/facts.py,
# lacking_by_pair), besides the indexes' own.
LACKING_COLUMNS = [
    "status",
    "event_time",
    "finished_at",
    "source_modified_at",
    "finding",
    "finding_at",
    "sequencer_order",
]


# What reconcile treats as a pair's open problem (replication/reconcile/findings.py): an open
# failure, or a lacking finding that no newer event superseded. One object, used by the query
# and by the partial index that serves it, so that PostgreSQL can prove the one implies the
# other.
OPEN_PROBLEM = OPEN_FAILURE | (
    Q(finding__in=LACKING_FINDINGS)
    & (Q(event_time__isnull=True) | Q(event_time__lte=F("finding_at")))
)


@deconstructible(path="replication.models.events.ByteOrdered")
class ByteOrdered(models.Func):
    """A text column in S3's key order, UTF-8 byte order: PostgreSQL's "C" collation (its
    default collation sorts otherwise). SQLite compares text as bytes already, and knows no
    collation "C". (Not a ``Collate``: an index takes that for the collation of a column,
    which SQLite would then be asked for.)"""

    template = '%(expressions)s COLLATE "C"'
    arity = 1

    def as_sqlite(self, compiler, connection, **extra_context):
        return compiler.compile(self.get_source_expressions()[0])


class ObjectStateQuerySet(models.QuerySet):
    def open_failures(self):
        """Failed copies that nothing newer resolved (no later success, no later finding)."""
        return self.filter(OPEN_FAILURE)

    def lacking(self):
        """Every object the backup lacks: open failures, and objects a reconcile (or the
        settling of in-flight objects) found missing or mismatched with nothing newer since.
        Each row's ``lacking_from`` is when the backup began to lack it: the event that
        should have copied it, or the source object's LastModified when that is later (a
        write no event announced)."""
        return self.filter(LACKING).annotate(lacking_from=lacking_from())

    def lacking_in_parts(self):
        """``lacking()`` as two disjoint parts, failed rows and the rest (found lacking by a
        reconcile), each the shape one partial index serves alone: counted apart, neither
        reads the table (an OR of the two would, a row per object lacking)."""
        failed = Q(status=CopyStatus.FAILED)
        return (
            self.filter(failed & LACKING).annotate(lacking_from=lacking_from()),
            # Without a failure, only a finding can make an object lacking.
            self.filter(FOUND_LACKING & ~failed).annotate(lacking_from=lacking_from()),
        )


def lacking_from() -> Greatest:
    # Greatest of the two that exist (SQLite's max() of a NULL is NULL, hence Coalesce).
    return Greatest(
        Coalesce("event_time", "source_modified_at"), Coalesce("source_modified_at", "event_time")
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
    successful copy that finished after the run listed the object (``finished_at >
    finding_at``), or a failure of a write made after it (``event_time > finding_at``),
    supersedes the finding; otherwise the finding supersedes the event. See ``LACKING``
    and the ``open_failures`` / ``lacking`` queries.
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
    # Set with the finding "kept" (a held change released with "keep"): the backup's ETag
    # at the release, and when. Reconcile counts the key kept while the backup still holds
    # that ETag and the source has not changed since.
    kept_etag = models.CharField(max_length=128, blank=True)
    kept_at = models.DateTimeField(null=True, blank=True)

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
            models.CheckConstraint(
                name="object_state_kept_with_etag",
                condition=~Q(finding=Finding.KEPT) | (Q(kept_at__isnull=False) & ~Q(kept_etag="")),
            ),
        ]
        indexes = [
            # Open failures per pair, newest first: the pair page's list (WHERE pair_id = %s
            # AND status = 'failed' ORDER BY finished_at DESC), and what the backup lacks,
            # counted for every pair on every overview, scrape and evaluation: the included
            # columns are all that count reads, so it never visits the table (an index only
            # scan), however many failures there are.
            models.Index(
                name="object_state_failures_idx",
                fields=["pair", "-finished_at"],
                condition=Q(status=CopyStatus.FAILED),
                include=[c for c in LACKING_COLUMNS if c != "finished_at"],
            ),
            # Objects a reconcile found lacking, oldest first: counts (index only, as above),
            # "behind by" and lists.
            models.Index(
                name="object_state_lacking_idx",
                fields=["pair", "source_modified_at"],
                condition=Q(finding__in=LACKING_FINDINGS),
                include=[c for c in LACKING_COLUMNS if c != "source_modified_at"],
            ),
            # Retention: objects deleted long ago, per pair, oldest first
            # (WHERE pair_id = %s AND status = 'deleted' AND finished_at < %s).
            models.Index(
                name="object_state_deleted_idx",
                fields=["pair", "finished_at"],
                condition=Q(status=CopyStatus.DELETED),
            ),
            # Each reconcile range's merge with the pair's open problems, a page of keys at a
            # time in S3's key order (WHERE pair_id = %s AND <OPEN_PROBLEM> AND key COLLATE "C"
            # > %s ORDER BY key COLLATE "C" LIMIT 1000): each page reads its own rows, where
            # the unique key's index, in the database's collation, left every page to sort
            # every problem of the pair. Partial, so ordinary rows skip it.
            models.Index(
                F("pair"),
                ByteOrdered("key"),
                name="object_state_problems_idx",
                condition=OPEN_PROBLEM,
            ),
            # Kept keys per pair: the pair page's count and each reconcile range's merge, in
            # S3's key order like the problems above (WHERE pair_id = %s AND finding = 'kept'
            # AND key COLLATE "C" > %s ...); partial, so small.
            models.Index(
                F("pair"),
                ByteOrdered("key"),
                name="object_state_kept_idx",
                condition=Q(finding=Finding.KEPT),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key}: {self.current}"

    @property
    def event_is_newer(self) -> bool:
        """The event came after the finding: a failure of a write made after the run listed
        the key, or a success that finished after it."""
        if self.sequencer_order is None:
            return False
        if not self.finding:
            return True
        if self.status == CopyStatus.FAILED:
            return self.event_time > self.finding_at
        return self.finished_at > self.finding_at

    @property
    def finding_is_current(self) -> bool:
        """True when the finding was made after the event it could have seen."""
        return bool(self.finding) and not self.event_is_newer

    @property
    def current(self) -> str:
        """The newest thing known: the finding if it came after the event, else the event."""
        return self.finding if self.finding_is_current else self.status

"""Reconcile runs: one comparison of a pair's source and backup, and what it found."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from replication.models.pairs import BucketPair


class ReconcileRun(models.Model):
    """One reconcile of one pair.

    Flow: ``QUEUED -> RUNNING -> SUCCEEDED | FAILED``; a queued run may also go straight to
    ``FAILED`` (it could not be enqueued, or no worker took it in time). "Succeeded" means the
    comparison finished, whatever it found. At most one queued or running run per pair, which
    the database enforces, so two workers can never reconcile one pair at once.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Verdict(models.TextChoices):
        """What a finished run found; what people read first (``status`` says whether the
        run itself worked). ``replication.reconcile.verdict`` decides it from the counts."""

        IN_SYNC = "in_sync", "in sync"
        OUT_OF_SYNC = "out_of_sync", "out of sync"
        UNPROVEN = "unproven"

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        SCHEDULED = "scheduled"
        API = "api"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="reconcile_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    repair = models.BooleanField(default=False, help_text="Copy what is missing or changed.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Set when the run succeeds, and only then; after a repair it describes the backup as the
    # repair left it. Empty ("no verdict") for queued, running and failed runs.
    verdict = models.CharField(max_length=16, choices=Verdict.choices, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written with every progress save; a running run whose heartbeat stops lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    # Progress and results. The counts are complete even when discrepancy rows are capped.
    objects_scanned = models.BigIntegerField(default=0, help_text="Both sides, live.")
    source_objects = models.BigIntegerField(default=0)
    destination_objects = models.BigIntegerField(default=0)
    source_bytes = models.BigIntegerField(default=0)
    destination_bytes = models.BigIntegerField(default=0)
    in_sync = models.BigIntegerField(default=0)
    missing = models.BigIntegerField(default=0)
    extra = models.BigIntegerField(default=0)
    mismatched = models.BigIntegerField(default=0)
    unverified = models.BigIntegerField(default=0)
    in_flight = models.BigIntegerField(default=0)
    kept = models.BigIntegerField(
        default=0,
        help_text="Objects the backup keeps as a guard release said (held changes kept): "
        "neither missing, mismatched nor extra.",
    )
    checksum_settled = models.BigIntegerField(
        default=0,
        help_text="Unverified or mismatched by their listings, settled by HEAD checksums "
        "(already counted as in sync or mismatched).",
    )
    # Repair: every missing and mismatched object found, whatever the cap on stored rows.
    # repair_total grows as the listing finds them; the three below it are saved with the
    # heartbeat while the repair copies, and set exactly from the ranges when the run ends.
    repair_total = models.BigIntegerField(
        default=0, help_text="Missing and mismatched objects the repair set out to copy."
    )
    repaired = models.BigIntegerField(default=0)
    repair_failed = models.BigIntegerField(default=0)
    repaired_missing = models.BigIntegerField(default=0)
    repaired_mismatched = models.BigIntegerField(default=0)
    extras_deleted = models.BigIntegerField(default=0)
    # How the run's stored in-flight rows settled once their grace had passed (HEAD on both
    # sides; settled_missing counts mismatched ones too: both are lacking). The run's counts
    # and verdict never change. settled_at: when its last stored in-flight row settled.
    settled_in_sync = models.BigIntegerField(default=0)
    settled_missing = models.BigIntegerField(default=0)
    settled_at = models.DateTimeField(null=True, blank=True)
    discrepancies_stored = models.PositiveIntegerField(default=0)
    ranges_total = models.PositiveIntegerField(default=0)
    ranges_done = models.PositiveIntegerField(default=0)
    # Keys sampled every RECONCILE_RANGE_SIZE source objects: the next run's range boundaries.
    range_boundaries = models.JSONField(default=list, blank=True)
    # When retention removed the run's discrepancy rows and ranges (replication/retention.py);
    # the counts above stay.
    discrepancies_purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pair"],
                condition=Q(status__in=["queued", "running"]),
                name="reconcile_one_active_run_per_pair",
                violation_error_message="This pair already has a reconcile queued or running.",
            ),
            models.CheckConstraint(
                name="reconcile_run_verdict_iff_succeeded",
                condition=Q(status="succeeded", verdict__in=["in_sync", "out_of_sync", "unproven"])
                | (~Q(status="succeeded") & Q(verdict="")),
                violation_error_message="A succeeded run has a verdict; any other has none.",
            ),
        ]
        indexes = [
            # Overview and pair pages: the latest runs of each pair.
            models.Index(fields=["pair", "-created_at"], name="reconcile_run_pair_latest"),
            # The reaper: active runs ordered by how long ago they last reported.
            models.Index(
                fields=["heartbeat_at"],
                condition=Q(status__in=["queued", "running"]),
                name="reconcile_run_active_heartbeat",
            ),
            # Settling: finished runs with in-flight objects not yet settled.
            models.Index(
                fields=["pair", "finished_at"],
                condition=Q(status="succeeded", in_flight__gt=0, settled_at__isnull=True),
                name="reconcile_run_to_settle",
            ),
            # Retention: runs whose rows are still kept, oldest first
            # (WHERE discrepancies_purged_at IS NULL AND created_at < %s ORDER BY created_at).
            models.Index(
                fields=["created_at"],
                condition=Q(discrepancies_purged_at__isnull=True),
                name="reconcile_run_details_kept",
            ),
        ]

    def __str__(self) -> str:
        # The verdict once there is one: "succeeded" says nothing about the backup.
        return f"reconcile #{self.pk} ({self.get_verdict_display() or self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.mismatched + self.unverified

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 3)
        return None


class ReconcileRange(models.Model):
    """One key range of a run, reconciled by one task; a run has one or more.

    Flow: ``QUEUED -> RUNNING -> SUCCEEDED | FAILED``. The range covers keys ``k`` (prefix
    removed) with ``start_after < k <= end``; an empty bound is open. Claiming a range is a
    conditional update, so a redelivered task never counts a range twice.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    run = models.ForeignKey(ReconcileRun, on_delete=models.CASCADE, related_name="ranges")
    index = models.PositiveIntegerField()
    # NULL is an open bound; "" would be a real key (an object named exactly like the prefix).
    start_after = models.TextField(null=True, blank=True)  # noqa: DJ001
    end = models.TextField(null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Each claim of the range (a redelivery after its worker died claims it again) takes the
    # next attempt; an older attempt that wakes up finds itself superseded and stops.
    attempt = models.PositiveSmallIntegerField(default=0)
    # The range's own heartbeat: the run's is kept fresh by its other ranges.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    boundaries = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="reconcile_range_unique_index")
        ]

    def __str__(self) -> str:
        return f"range {self.index} of run {self.run_id}"


class Discrepancy(models.Model):
    """A key that differs between source and backup in one run (rows capped per run)."""

    class Kind(models.TextChoices):
        # The values are replication.reconcile.diff's categories (a test keeps them equal).
        MISSING = "missing"
        EXTRA = "extra"
        MISMATCHED = "mismatched"
        UNVERIFIED = "unverified"
        IN_FLIGHT = "in_flight", "in flight"

    class Repair(models.TextChoices):
        NONE = "", "not repaired"
        COPIED = "copied"
        DELETED = "deleted"
        SKIPPED = "skipped"
        FAILED = "failed"

    run = models.ForeignKey(ReconcileRun, on_delete=models.CASCADE, related_name="discrepancies")
    # The source key as S3 names it, prefix included, like CopyEvent.key and ObjectState.key
    # (for an extra, the key the source would have): one convention for every page, export
    # and message. Reconcile compares keys without the prefixes and adds it back here.
    key = models.TextField(help_text="The source key, prefix included.")
    # The range that found it: a range claimed again drops its dead attempt's rows.
    range_index = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    source_size = models.BigIntegerField(null=True, blank=True)
    # ETags of S3-compatible servers may be longer than AWS's 34 characters: no limit.
    source_etag = models.TextField(blank=True)
    source_last_modified = models.DateTimeField(null=True, blank=True)
    backup_size = models.BigIntegerField(null=True, blank=True)
    backup_etag = models.TextField(blank=True)
    backup_last_modified = models.DateTimeField(null=True, blank=True)

    class Settled(models.TextChoices):
        """How an in-flight row settled once its grace had passed (reconcile/settle.py)."""

        NOT_YET = "", "not settled"
        IN_SYNC = "in_sync", "in sync"
        MISSING = "missing"
        MISMATCHED = "mismatched"
        UNVERIFIED = "unverified"
        GONE = "gone", "gone from the source"

    repaired = models.BooleanField(default=False)
    settled = models.CharField(max_length=16, choices=Settled.choices, blank=True)
    repair_outcome = models.CharField(max_length=16, choices=Repair.choices, blank=True)
    repair_error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "id"]
        verbose_name_plural = "discrepancies"
        indexes = [
            # The run page: a run's discrepancies, filtered and counted by kind.
            models.Index(fields=["run", "kind"], name="discrepancy_run_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}"

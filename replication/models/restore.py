"""Restores and restore drills: bringing a pair's backup back as it was, and proving it can be."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from replication.models.pairs import BucketPair


class RestoreJob(models.Model):
    """One restore of a pair's backup as it was at ``at``, into a target; its own audit record.

    Flow: ``QUEUED -> RUNNING -> SUCCEEDED | FAILED``, and ``CANCELLED`` from either active
    state when a person stops it. A running job whose worker died is taken over by the next
    attempt (the reaper queues it again), which copies only what no earlier attempt recorded.
    At most one queued or running job per target bucket, which the database enforces: two
    restores writing the same keys would race. A cancelled job frees its target at once.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Via(models.TextChoices):
        COMMAND = "command", "command line"
        PAGE = "page", "pair page"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="restore_jobs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=16, choices=Via.choices, default=Via.COMMAND)
    # Who asked, in words that survive the user's deletion ("alice", "root@host (command)").
    requested_by_name = models.CharField(max_length=150, blank=True)
    at = models.DateTimeField(help_text="The moment restored, by the backup's LastModified.")
    prefix = models.TextField(blank=True, help_text="As the source names keys; empty: all.")
    target_bucket = models.CharField(max_length=63)
    target_prefix = models.TextField(blank=True)
    into_source = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_by_name = models.CharField(max_length=150, blank=True)

    # The plan, as counted before the first copy.
    planned_objects = models.BigIntegerField(default=0)
    planned_bytes = models.BigIntegerField(default=0)
    skipped = models.BigIntegerField(default=0, help_text="Keys deleted at the time.")
    absent = models.BigIntegerField(default=0, help_text="Keys that did not exist at the time.")
    # Progress, live; recounted from the outcome rows when the job ends.
    restored = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    bytes_restored = models.BigIntegerField(default=0)
    # The last outcome row whose copy may have started: a later attempt checks the pending
    # rows up to it before copying them. Zero until the plan is written down whole.
    copying_through = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_bucket"],
                condition=Q(status__in=["queued", "running"]),
                name="restore_one_active_job_per_target",
                violation_error_message="A restore into this bucket is already queued or running.",
            ),
            models.CheckConstraint(
                name="restore_counts_not_negative",
                condition=Q(planned_objects__gte=0, restored__gte=0, failed__gte=0),
            ),
        ]
        indexes = [
            # The pair page: a pair's latest restores.
            models.Index(fields=["pair", "-created_at"], name="restore_job_pair_latest"),
            # The reaper: active jobs by how long ago they last reported.
            models.Index(
                fields=["heartbeat_at"],
                condition=Q(status__in=["queued", "running"]),
                name="restore_job_active_heartbeat",
            ),
        ]

    def __str__(self) -> str:
        return f"restore #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def target_location(self) -> str:
        return f"{self.target_bucket}/{self.target_prefix}"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 3)
        return None


class RestoredObject(models.Model):
    """One object of a restore and what became of it (``PENDING`` while its copy runs).

    A row is written before its copy starts, so an attempt taking over from a dead worker
    knows which copies may have happened and checks them instead of copying again.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending"
        RESTORED = "restored"
        FAILED = "failed"

    job = models.ForeignKey(RestoreJob, on_delete=models.CASCADE, related_name="outcomes")
    key = models.TextField(help_text="The source key, prefix included.")
    version_id = models.CharField(max_length=1024)
    size = models.BigIntegerField()
    etag = models.CharField(max_length=80)
    # A target that encrypts with KMS gives the object it writes an ETag of its own, and the
    # Lambda reports that one when it copies the write back: recorded as soon as the copy
    # returns, so that the guard knows the write for the restore's (writes.py).
    written_etag = models.CharField(
        max_length=128,
        blank=True,
        help_text="The ETag the copy wrote, when it is not the version's (a KMS target).",
    )
    target_key = models.TextField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    verified_by = models.CharField(max_length=16, blank=True)  # etag, checksum, head
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]
        constraints = [
            # Each key once per job: a second attempt finds the first's row.
            models.UniqueConstraint(fields=["job", "key"], name="restored_object_once_per_job")
        ]
        indexes = [
            # The job page and its CSV: a job's outcomes, filtered and counted by outcome.
            models.Index(fields=["job", "outcome"], name="restored_object_job_outcome"),
            # The worker, a chunk of rows at a time in order, and the job page's pages.
            models.Index(fields=["job", "id"], name="restored_object_job_order"),
        ]

    def __str__(self) -> str:
        return f"{self.outcome}: {self.key}"


class RestorePoint(models.Model):
    """A moment worth restoring a prefix to, flagged with what went wrong after it ("42
    objects under raw/ overwritten with garbage"). The pair page offers "Restore..." prefilled
    with it until a restore of that moment and prefix is started. The demo flags the incident
    it plays; an operator can flag one in the admin for whoever restores.
    """

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="restore_points")
    at = models.DateTimeField(help_text="The moment to restore to: just before it went wrong.")
    prefix = models.TextField(blank=True, help_text="As the source names keys; empty: all.")
    reason = models.TextField(help_text="What went wrong after that moment, in a sentence.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The pair page's restore panel: a pair's latest restore points.
            models.Index(fields=["pair", "-created_at"], name="restore_point_pair_latest"),
        ]

    def __str__(self) -> str:
        return f"restore point of {self.pair} at {self.at:%Y-%m-%d %H:%M:%S}"


class RestoreDrill(models.Model):
    """One restore drill of a pair: a sample restored to scratch, read back and compared.

    Flow: ``RUNNING -> PASSED | FAILED | ERROR``. Failed: bytes differ (the backup could not
    be restored as it is); error: the drill could not run (nothing to sample, S3 refused).
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        PASSED = "passed"
        FAILED = "failed"
        ERROR = "error"

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        SCHEDULED = "scheduled"

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="restore_drills")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    # Who pressed "Run drill now" (empty for the schedule and the command line), kept in
    # words too, so the audit survives the user's deletion.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_name = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    scratch = models.TextField(help_text="bucket/prefix the sample was restored under.")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    sampled = models.PositiveIntegerField(default=0)
    verified = models.PositiveIntegerField(default=0)
    sampled_bytes = models.BigIntegerField(default=0)
    duration_s = models.FloatField(null=True, blank=True)
    throughput_bytes_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pair"],
                condition=Q(status="running"),
                name="restore_drill_one_running_per_pair",
                violation_error_message="A drill of this pair is already running.",
            ),
        ]
        indexes = [
            # Health, /metrics and the pair page: each pair's latest finished drill.
            models.Index(fields=["pair", "-started_at"], name="restore_drill_pair_latest"),
        ]

    def __str__(self) -> str:
        return f"drill #{self.pk} ({self.status})"


class DrillObject(models.Model):
    """One sampled object of a drill: restored, read back in full, compared with the source."""

    class Outcome(models.TextChoices):
        VERIFIED = "verified"
        DIFFERS = "differs"
        ERROR = "error"

    drill = models.ForeignKey(RestoreDrill, on_delete=models.CASCADE, related_name="samples")
    key = models.TextField(help_text="The source key, prefix included.")
    size = models.BigIntegerField()
    multipart = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    compared_by = models.CharField(max_length=16, blank=True)  # md5 or sha256
    duration_s = models.FloatField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["drill", "id"]

    def __str__(self) -> str:
        return f"{self.outcome}: {self.key}"

    @property
    def throughput_bytes_s(self) -> float | None:
        return self.size / self.duration_s if self.duration_s else None

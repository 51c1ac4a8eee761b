"""The destructive-change guard: per-minute counts of destructive changes, holds, and the
audit of every trip, release and pause.

Written by ingest (GuardTally, in the statement that stores the events) and by
replication/protection/guard.py (holds and audit). The settings live on the pair.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from replication.models.pairs import BucketPair


class GuardTally(models.Model):
    """Destructive changes of a pair that finished within one minute (UTC, truncated).

    ``changes``: deletes and overwrites (a copy of a key whose known state held other
    content, by ETag); ``encrypted_refusals``: copies S3 refused because the source object
    is encrypted with a customer key (SSE-C). Ingest adds to a row in the statement that
    stores the events, so a counted event is a stored event.
    """

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    # Concurrent posts add to different rows (by database backend process), not to one
    # contended row per pair and minute; readers sum the shards.
    shard = models.PositiveSmallIntegerField(default=0)
    changes = models.PositiveIntegerField(default=0)
    encrypted_refusals = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["pair", "minute"]
        constraints = [
            # Also the index of the guard's queries: the last five minutes of every pair
            # (evaluate, each minute) and fourteen days of one pair (the usual, hourly).
            models.UniqueConstraint(
                fields=["pair", "minute", "shard"], name="guard_tally_one_per_minute"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} {self.minute:%Y-%m-%d %H:%M}: {self.changes}"


class GuardRelease(models.TextChoices):
    APPLY = "apply", "apply the held changes"
    KEEP = "keep", "keep the backup as it is"


class GuardHold(models.Model):
    """A tripped guard: open (``released_at`` empty) until a person releases it.

    open -> released (apply | keep). At most one open hold per pair (a constraint), so two
    evaluators racing on one burst trip it once.
    """

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="guard_holds")
    since = models.DateTimeField()
    reason = models.TextField()
    changes = models.PositiveIntegerField(help_text="Destructive changes in the 5 minutes.")
    encrypted_refusals = models.PositiveIntegerField(default=0)
    usual = models.PositiveIntegerField(help_text="The pair's usual 5-minute count then.")
    threshold = models.PositiveIntegerField()
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    release = models.CharField(max_length=8, choices=GuardRelease.choices, blank=True)

    class Meta:
        ordering = ["-since", "-id"]
        permissions = [("release_guard", "Can release or pause a pair's destructive-change guard")]
        constraints = [
            # Also the index of "the open holds" (health, the guard API, the pair page).
            models.UniqueConstraint(
                fields=["pair"], condition=Q(released_at__isnull=True), name="guard_one_open_hold"
            ),
            models.CheckConstraint(
                name="guard_release_with_its_time",
                condition=(Q(released_at__isnull=True) & Q(release=""))
                | (Q(released_at__isnull=False) & Q(release__in=GuardRelease.values)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} held since {self.since:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.released_at is None


class GuardAction(models.TextChoices):
    TRIPPED = "tripped", "tripped"
    RELEASED_APPLY = "released_apply", "released: apply the held changes"
    RELEASED_KEEP = "released_keep", "released: keep the backup as it is"
    PAUSED = "paused", "paused"
    RESUMED = "resumed", "resumed"


class GuardAudit(models.Model):
    """Every trip, release and pause of a pair's guard; append-only."""

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="guard_audit")
    at = models.DateTimeField()
    action = models.CharField(max_length=16, choices=GuardAction.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # The pair page's latest entries.
            models.Index(fields=["pair", "-at"], name="guard_audit_pair_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} {self.action} at {self.at:%Y-%m-%d %H:%M}"

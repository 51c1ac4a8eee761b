"""Protection checks' results, kept with their history, and acknowledged bucket policies.

Written by replication/protection/store.py. Each check run of a pair adds one row per check
and marks it the latest; the rows it replaces stay, as history, for
PROTECTION_RESULT_RETENTION_DAYS (replication/retention.py).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from replication.models.pairs import BucketPair


class ProtectionCheck(models.TextChoices):
    """The checks of replication.protection.rules.CheckId, as stored."""

    BACKUP_VERSIONING = "backup_versioning", "backup versioning"
    BACKUP_RETENTION = "backup_retention", "backup retention"
    BACKUP_OBJECT_LOCK = "backup_object_lock", "backup Object Lock"
    BACKUP_PUBLIC_ACCESS = "backup_public_access", "backup public access"
    BACKUP_POLICY = "backup_policy", "backup bucket policy"
    SOURCE_TRIGGER = "source_trigger", "source trigger"
    ENCRYPTION = "encryption", "encryption"


class ProtectionState(models.TextChoices):
    """replication.protection.rules.CheckState, as stored. ``unknown``: could not be read."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


class ProtectionResult(models.Model):
    """One check of one pair at one time. Append-only but for ``is_latest``, which a newer
    result of the same check clears (in the same transaction that adds it)."""

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="protection_results"
    )
    check_id = models.CharField("check", max_length=32, choices=ProtectionCheck.choices)
    state = models.CharField(max_length=10, choices=ProtectionState.choices)
    reason = models.TextField()
    fix = models.TextField(blank=True, help_text="The setting or AWS CLI command that fixes it.")
    detail = models.TextField(blank=True, help_text="The bucket policy's difference, if any.")
    observed = models.TextField(blank=True, help_text="The bucket policy as read (normalised).")
    checked_at = models.DateTimeField()
    is_latest = models.BooleanField(default=True)

    class Meta:
        ordering = ["-checked_at", "check_id"]
        permissions = [
            ("run_protection_checks", "Can run a pair's protection checks"),
            ("acknowledge_bucket_policy", "Can acknowledge a backup bucket's policy"),
        ]
        indexes = [
            # One check's history for a pair, newest first (the pair page's "since" and the
            # admin's list filtered by pair).
            models.Index(fields=["pair", "check_id", "-checked_at"], name="protection_history_idx"),
        ]
        constraints = [
            # Also the index of "the latest result of each check for these pairs", which the
            # pair page, health and /metrics read (WHERE is_latest AND pair_id IN (...)).
            models.UniqueConstraint(
                fields=["pair", "check_id"],
                condition=Q(is_latest=True),
                name="protection_one_latest_per_check",
            ),
            models.CheckConstraint(
                name="protection_state_valid", condition=Q(state__in=ProtectionState.values)
            ),
            models.CheckConstraint(
                name="protection_check_valid", condition=Q(check_id__in=ProtectionCheck.values)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} {self.check_id} {self.state} at {self.checked_at:%Y-%m-%d %H:%M}"


class PolicyAcknowledgement(models.Model):
    """A person's word that a backup bucket policy is the intended one; append-only.

    ``policy`` is the normalised policy text ("" acknowledges having none).
    """

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="policy_acknowledgements"
    )
    policy = models.TextField(blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField()

    class Meta:
        ordering = ["-acknowledged_at", "-id"]
        indexes = [
            # The pair's latest acknowledgement, read by every run of the policy check.
            models.Index(fields=["pair", "-acknowledged_at"], name="policy_ack_latest_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} policy acknowledged at {self.acknowledged_at:%Y-%m-%d %H:%M}"

"""Alerts: each pair's health history, where to send alerts, and every delivery.

Written by replication/alerts/ (evaluate.py records changes and deliveries, delivery.py
sends them). Uniqueness is the database's job here: two beat processes, or an evaluation
redelivered after a worker crash, may run the same step twice, and a constraint is what
turns the second attempt into a no-op instead of a second alert.
"""

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from replication.models.pairs import BucketPair


class HealthState(models.TextChoices):
    """The states of replication.status.health.State, as stored."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    PAUSED = "paused"


class HealthChange(models.Model):
    """One change of a pair's health state; append-only (never updated). Deleted only by
    retention, after ALERT_HISTORY_RETENTION_DAYS, and never a pair's latest change.

    ``sequence`` numbers a pair's changes 1, 2, 3...; the next change of a pair is the
    latest one's sequence plus one, and the unique constraint lets only one evaluator
    write it. The first change of a pair has no ``from_state``.
    """

    pair = models.ForeignKey(BucketPair, on_delete=models.CASCADE, related_name="health_changes")
    sequence = models.PositiveIntegerField()
    from_state = models.CharField(max_length=10, choices=HealthState.choices, blank=True)
    to_state = models.CharField(max_length=10, choices=HealthState.choices)
    reason = models.TextField()
    reasons = models.JSONField(default=list, help_text="Every finding, most severe first.")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        get_latest_by = "sequence"
        constraints = [
            models.UniqueConstraint(
                fields=["pair", "sequence"],
                name="health_change_one_per_pair_sequence",
                violation_error_message="This change of the pair's health is already recorded.",
            ),
            models.CheckConstraint(
                name="health_change_states_valid",
                condition=Q(to_state__in=HealthState.values)
                & Q(from_state__in=["", *HealthState.values]),
            ),
            models.CheckConstraint(
                name="health_change_is_a_change", condition=~Q(from_state=models.F("to_state"))
            ),
            models.CheckConstraint(
                name="health_change_first_has_no_from_state",
                condition=Q(sequence=1, from_state="") | (Q(sequence__gt=1) & ~Q(from_state="")),
            ),
        ]
        indexes = [
            # The evaluator's "latest change of each pair" and the pair page's timeline.
            models.Index(fields=["pair", "-sequence"], name="health_change_pair_timeline"),
            # Retention (WHERE at < %s ORDER BY at) and the admin's list, newest first.
            models.Index(fields=["at"], name="health_change_at"),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id}: {self.from_state or 'new'} -> {self.to_state}"


def new_channel_secret() -> str:
    return secrets.token_urlsafe(32)


def target_problem(kind: str, target: str) -> str | None:
    """Why ``target`` cannot receive ``kind`` messages, or None."""
    target = target.strip()
    if not target:
        return "Give at least one address or URL."
    if kind == "email":
        for address in (a.strip() for a in target.split(",")):
            try:
                validate_email(address)
            except ValidationError:
                return f"{address!r} is not an e-mail address."
        return None
    try:
        URLValidator(schemes=["http", "https"])(target)
    except ValidationError:
        return "Give the http:// or https:// URL to POST to."
    return None


class AlertChannelQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(enabled=True)


class AlertChannel(models.Model):
    """Somewhere alerts go: e-mail addresses, a signed JSON webhook, or a Slack webhook.

    A channel serves the pairs chosen for it, or every pair with ``all_pairs``. A webhook's
    secret signs its requests; like an ingest key's it is shown once, on creation (and once
    more each time it is regenerated).
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "e-mail"
        WEBHOOK = "webhook", "JSON webhook (signed)"
        SLACK = "slack", "Slack incoming webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = models.CharField(
        max_length=2000,
        help_text="E-mail: addresses separated by commas. Webhook and Slack: the https:// URL "
        "to POST to (a Slack URL is a credential: treat it as one).",
    )
    secret = models.CharField(max_length=128, default=new_channel_secret, editable=False)
    enabled = models.BooleanField(default=True)
    all_pairs = models.BooleanField(
        default=False, help_text="Alert on every pair, including pairs added later."
    )
    pairs = models.ManyToManyField(
        BucketPair,
        blank=True,
        related_name="alert_channels",
        help_text="The pairs this channel alerts on (ignored when 'all pairs' is set).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AlertChannelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [("test_alertchannel", "Can send a test notification to a channel")]
        constraints = [
            models.CheckConstraint(
                name="alert_channel_kind_valid", condition=Q(kind__in=["email", "webhook", "slack"])
            ),
            models.CheckConstraint(name="alert_channel_target_set", condition=~Q(target="")),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def clean(self) -> None:
        if not self.target.strip():
            return  # the field's own "required" error says so; a second would repeat it
        problem = target_problem(self.kind, self.target)
        if problem:
            raise ValidationError({"target": problem})

    def regenerate_secret(self) -> None:
        """Sign with a new secret from now on; the old one stops verifying at once."""
        self.secret = new_channel_secret()
        self.save(update_fields=["secret"])

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.target.split(",") if a.strip()]


class Notification(models.Model):
    """One message to one channel, and what became of it.

    Flow: ``PENDING -> SENDING -> SENT``; a failed attempt goes back to ``PENDING`` (retried
    with backoff) until the attempts run out: ``FAILED``. A ``SENDING`` row whose worker died
    is claimable again once its lease has passed. The flapping damper turns a claimed alert
    or resolution of a flapping pair into ``HELD``; when its summary is due, the latest held
    row of the pair and channel becomes the ``SUMMARY`` (back to ``PENDING``) and the others
    ``SUMMARISED``.

    ``sequence`` is 0 for the message about the change itself and n for the change's n-th
    reminder; one row per (change, channel, sequence), whoever tries to write it.
    """

    class Kind(models.TextChoices):
        ALERT = "alert"
        RESOLVED = "resolved"
        REMINDER = "reminder"
        SUMMARY = "summary"
        TEST = "test"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        HELD = "held", "held (pair flapping)"
        SUMMARISED = "summarised", "in a summary"

    change = models.ForeignKey(
        HealthChange,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
        help_text="Empty for a test notification.",
    )
    channel = models.ForeignKey(
        AlertChannel, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    sequence = models.PositiveIntegerField(default=0)
    # What the message says, fixed when it was queued (a reminder carries the reason of its
    # time, which may differ from the change's).
    state = models.CharField(max_length=10, choices=HealthState.choices, blank=True)
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["change", "channel", "sequence"],
                name="notification_once_per_change_channel",
                violation_error_message="This message was already queued for this channel.",
            ),
            models.CheckConstraint(
                name="notification_test_iff_no_change",
                condition=Q(kind="test", change__isnull=True)
                | (~Q(kind="test") & Q(change__isnull=False)),
            ),
            models.CheckConstraint(
                name="notification_reminders_numbered",
                condition=Q(kind="reminder", sequence__gte=1)
                | (~Q(kind="reminder") & Q(sequence=0)),
            ),
            models.CheckConstraint(
                name="notification_status_valid",
                condition=Q(
                    status__in=["pending", "sending", "sent", "failed", "held", "summarised"]
                ),
            ),
            models.CheckConstraint(
                name="notification_sent_has_time",
                condition=~Q(status="sent") | Q(sent_at__isnull=False),
            ),
        ]
        indexes = [
            # The evaluator's sweep: pending deliveries whose retry is overdue.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="notification_unfinished",
            ),
            # The flapping damper: messages held for a summary, found every minute
            # (WHERE status = 'held').
            models.Index(
                fields=["channel", "created_at"],
                condition=Q(status="held"),
                name="notification_held",
            ),
            # Retention of test notifications (WHERE change_id IS NULL AND created_at < %s);
            # the others go with their change.
            models.Index(
                fields=["created_at"],
                condition=Q(change__isnull=True),
                name="notification_test_created",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.channel_id} ({self.status})"

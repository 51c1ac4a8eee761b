import secrets
from datetime import timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from replication.buckets import (
    bucket_name_problem,
    normalize_prefix,
    prefix_problem,
    prefixes_overlap,
)


def validate_bucket_name(value: str) -> None:
    problem = bucket_name_problem(value)
    if problem:
        raise ValidationError(f"{value!r} is not a valid S3 bucket name: it {problem}.")


def new_badge_token() -> str:
    return secrets.token_urlsafe(24)


class BucketPair(models.Model):
    """A source bucket (or a prefix of it) and the backup that the Lambda keeps of it."""

    name = models.SlugField(
        max_length=63, unique=True, help_text="Short identifier used in URLs and commands."
    )
    source_bucket = models.CharField(max_length=63, validators=[validate_bucket_name])
    source_prefix = models.CharField(
        max_length=512, blank=True, help_text="Only keys under this prefix are backed up."
    )
    backup_bucket = models.CharField(max_length=63, validators=[validate_bucket_name])
    backup_prefix = models.CharField(
        max_length=512, blank=True, help_text="Put before every key in the backup."
    )
    region = models.CharField(max_length=32, default="us-east-1")
    enabled = models.BooleanField(
        default=True, help_text="Disabled pairs are neither reconciled nor alerted on."
    )
    grace_seconds = models.PositiveIntegerField(
        "grace period (seconds)",
        default=15 * 60,
        help_text="Source objects younger than this count as in flight, not missing.",
    )
    reconcile_every_minutes = models.PositiveIntegerField(
        "reconcile every (minutes)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Leave empty to reconcile only on demand.",
    )
    lag_objective_seconds = models.PositiveIntegerField(
        "lag objective (seconds)",
        default=15 * 60,
        validators=[MinValueValidator(1)],
        help_text="Copies slower than this count against the pair's health. "
        "15 minutes is what S3 Replication Time Control promises.",
    )
    freshness_target = models.DecimalField(
        "freshness target (%)",
        max_digits=6,
        decimal_places=3,
        default=Decimal("99.900"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("100"))],
        help_text="The share of copies each month that must finish within the lag objective. "
        "99.9% is S3 Replication Time Control's.",
    )
    mirror_deletes = models.BooleanField(
        default=False,
        help_text="Delete backup copies of objects deleted from the source. "
        "Off by default: a backup keeps what the source lost.",
    )
    protection_window_days = models.PositiveIntegerField(
        "protection window (days)",
        default=30,
        validators=[MinValueValidator(1)],
        help_text="How far back any earlier state of an object must stay restorable: "
        "the protection checks compare the backup's lifecycle rules and Object Lock with it.",
    )
    # The destructive-change guard (replication/protection/guard.py, docs/protection.md).
    guard_min_changes = models.PositiveIntegerField(
        "guard: minimum changes",
        default=500,
        validators=[MinValueValidator(1)],
        help_text="The guard trips on more deletes and overwrites in 5 minutes than the larger "
        "of this and the factor times the usual count. Default 500.",
    )
    guard_factor = models.PositiveIntegerField(
        "guard: factor",
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Times the usual 5-minute count (its 99th percentile over 14 days). Default 10.",
    )
    guard_usual = models.PositiveIntegerField(
        "guard: usual 5-minute count",
        default=0,
        editable=False,
        help_text="The 99th percentile of the pair's 5-minute counts over 14 days, hourly.",
    )
    guard_paused_until = models.DateTimeField(
        "guard paused until",
        null=True,
        blank=True,
        editable=False,
        help_text="A planned bulk change: the guard does not trip before this.",
    )
    restore_drill_every_days = models.PositiveSmallIntegerField(
        "restore drill every (days)",
        default=7,
        help_text="A sample of the backup is restored and compared this often; 0: never.",
    )
    drill_max_bytes = models.BigIntegerField(
        "largest drill object (bytes)",
        default=1024**3,
        validators=[MinValueValidator(0)],
        help_text="The drill adds the largest multipart object up to this size to its sample.",
    )
    drill_scratch = models.CharField(
        "drill scratch place",
        max_length=600,
        blank=True,
        help_text="bucket/prefix drills restore into; empty: .backupsite/drills/ in the "
        "backup bucket.",
    )
    # The secret part of the pair's public badge URL (/badge/<token>.svg): whoever has it
    # sees the pair's name, state and reason, nothing else. Regenerated in the admin.
    badge_token = models.CharField(
        max_length=64, unique=True, default=new_badge_token, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("reconcile_bucketpair", "Can start a reconcile or repair of a pair"),
            ("restore_bucketpair", "Can restore a pair's backup"),
        ]
        constraints = [
            # The Lambda would copy its own writes forever, and a reconcile would compare a
            # key space with itself.
            models.CheckConstraint(
                name="pair_backup_not_inside_source",
                condition=~Q(source_bucket=F("backup_bucket"))
                | (
                    ~Q(source_prefix__startswith=F("backup_prefix"))
                    & ~Q(backup_prefix__startswith=F("source_prefix"))
                ),
                violation_error_message="The backup must not overlap the source.",
            ),
            models.CheckConstraint(
                name="pair_bucket_names_length",
                condition=Q(
                    source_bucket__regex=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                    backup_bucket__regex=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                ),
                violation_error_message="Bucket names must follow S3's naming rules.",
            ),
            models.CheckConstraint(
                name="pair_reconcile_interval_positive",
                condition=Q(reconcile_every_minutes__isnull=True)
                | Q(reconcile_every_minutes__gte=1),
            ),
            models.CheckConstraint(
                name="pair_lag_objective_positive", condition=Q(lag_objective_seconds__gte=1)
            ),
            models.CheckConstraint(
                name="pair_freshness_target_in_range",
                condition=Q(freshness_target__gt=0, freshness_target__lte=100),
            ),
            models.CheckConstraint(
                name="pair_protection_window_positive", condition=Q(protection_window_days__gte=1)
            ),
            models.CheckConstraint(
                name="pair_guard_settings_positive",
                condition=Q(guard_min_changes__gte=1) & Q(guard_factor__gte=1),
            ),
            models.CheckConstraint(
                name="pair_name_not_empty", condition=Q(name__regex=r"^[-a-zA-Z0-9_]+$")
            ),
            # Prefixes as S3 names keys: empty, or ending in "/", never beginning with
            # whitespace (clean() refuses whitespace at either end before adding the "/").
            models.CheckConstraint(
                name="pair_prefixes_as_keys",
                condition=(Q(source_prefix="") | Q(source_prefix__regex=r"(?s)^(\S.*)?/$"))
                & (Q(backup_prefix="") | Q(backup_prefix__regex=r"(?s)^(\S.*)?/$")),
                violation_error_message="A prefix is empty or ends with '/', without "
                "whitespace at its start.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # Only the trailing slash is added: a prefix is kept as S3 names keys, and one with
        # surrounding whitespace is refused by clean() and by the database, never trimmed.
        self.source_prefix = normalize_prefix(self.source_prefix)
        self.backup_prefix = normalize_prefix(self.backup_prefix)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        problems = {
            field: prefix_problem(getattr(self, field))
            for field in ("source_prefix", "backup_prefix")
        }
        problems = {field: problem for field, problem in problems.items() if problem}
        if problems:
            raise ValidationError(problems)
        self.source_prefix = normalize_prefix(self.source_prefix)
        self.backup_prefix = normalize_prefix(self.backup_prefix)
        if self.source_bucket and self.source_bucket == self.backup_bucket:
            if not (self.source_prefix or self.backup_prefix):
                raise ValidationError(
                    {"backup_bucket": "The backup bucket must not be the source bucket itself."}
                )
            if prefixes_overlap(self.source_prefix, self.backup_prefix):
                raise ValidationError(
                    {
                        "backup_prefix": (
                            f"In the same bucket, the prefixes {self.source_prefix!r} and "
                            f"{self.backup_prefix!r} overlap: the backup would copy itself."
                        )
                    }
                )

    def backup_key(self, source_key: str) -> str:
        """Where the backup keeps the object that the source names ``source_key``."""
        return self.backup_prefix + self.relative_source_key(source_key)

    def relative_source_key(self, source_key: str) -> str:
        """``source_key`` without the source prefix: how reconcile compares the two sides."""
        if not source_key.startswith(self.source_prefix):
            raise ValueError(f"{source_key!r} is not under the prefix {self.source_prefix!r}")
        return source_key[len(self.source_prefix) :]

    def regenerate_badge_token(self) -> None:
        """A new badge URL; the old one answers 404 from now on."""
        self.badge_token = new_badge_token()
        self.save(update_fields=["badge_token", "updated_at"])

    @property
    def source_location(self) -> str:
        return f"{self.source_bucket}/{self.source_prefix}"

    @property
    def backup_location(self) -> str:
        return f"{self.backup_bucket}/{self.backup_prefix}"

    @property
    def grace_period(self) -> timedelta:
        return timedelta(seconds=self.grace_seconds)

    @property
    def lag_objective(self) -> timedelta:
        return timedelta(seconds=self.lag_objective_seconds)

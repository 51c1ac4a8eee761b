"""Totals that ingest keeps as it stores events, so that readers never count events.

- CopyTally and IngestTally: running totals behind /metrics' counters. Prometheus counters
  must never go down, but per-event rows are deleted after EVENT_RETENTION_DAYS; so
  retention leaves these alone.
- HourlyTally: each pair's copy results per hour with a lag histogram, behind the charts
  that span days (the overview's sparkline, a pair's 7 and 30 days). Retention deletes
  them with the events of their hour.

- HourlyTotal: each pair's copies, failures and lag percentiles per closed hour, rolled up
  from its HourlyTally rows, behind the pages that read every pair's day (the overview's
  totals and rows): one row per pair and hour instead of one per lag bucket.

Each total is split into a few shards (by database connection), so concurrent ingest
requests for one pair rarely wait on one row; readers sum the shards. Every few minutes,
closed hours' HourlyTally shards are folded into one row in shard FOLDED and rolled up into
HourlyTotal in the same transaction (replication/ingest/folding.py): an hour's folded rows
and its HourlyTotal always agree, and a late report starts an unfolded shard again.
"""

from django.db import models
from django.db.models import Q

from replication.models.events import CopyStatus
from replication.models.pairs import BucketPair

# Rows per total; a connection writes to shard pg_backend_pid() % SHARDS.
SHARDS = 8
# HourlyTally's shard for rows folded and rolled up into HourlyTotal; ingest never writes it.
FOLDED = SHARDS


class CopyTally(models.Model):
    """How many copy results of one status a pair has had, by lag bucket (see
    replication/monitoring/lag.py), and the sum of their lags."""

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="copy_tallies", db_index=False
    )
    status = models.CharField(max_length=10, choices=CopyStatus)
    lag_bucket = models.PositiveSmallIntegerField()
    shard = models.PositiveSmallIntegerField(default=0)
    copies = models.BigIntegerField(default=0)
    lag_seconds_sum = models.FloatField(default=0.0)

    class Meta:
        ordering = ["pair", "status", "lag_bucket", "shard"]
        constraints = [
            # Ingest's ON CONFLICT target; it also serves /metrics' grouped sum.
            models.UniqueConstraint(
                name="copy_tally_unique", fields=["pair", "status", "lag_bucket", "shard"]
            ),
            models.CheckConstraint(
                name="copy_tally_status_valid", condition=Q(status__in=CopyStatus.values)
            ),
            models.CheckConstraint(name="copy_tally_shard_in_range", condition=Q(shard__lt=SHARDS)),
            models.CheckConstraint(name="copy_tally_copies_positive", condition=Q(copies__gte=0)),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} {self.status} bucket {self.lag_bucket}: {self.copies}"


class IngestTally(models.Model):
    """Requests the ingest API answered, by HTTP status, and what it refused, by reason;
    and the guard lookups the Lambda reported failed (label "failed")."""

    class Counter(models.TextChoices):
        REQUESTS = "requests"
        REJECTIONS = "rejections"
        GUARD_LOOKUPS = "guard_lookups"

    counter = models.CharField(max_length=16, choices=Counter)
    label = models.CharField(max_length=32, help_text="HTTP status, or rejection reason.")
    shard = models.PositiveSmallIntegerField(default=0)
    count = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["counter", "label", "shard"]
        constraints = [
            models.UniqueConstraint(
                name="ingest_tally_unique", fields=["counter", "label", "shard"]
            ),
            models.CheckConstraint(
                name="ingest_tally_counter_valid",
                condition=Q(counter__in=["requests", "rejections", "guard_lookups"]),
            ),
            models.CheckConstraint(
                name="ingest_tally_shard_in_range", condition=Q(shard__lt=SHARDS)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.counter} {self.label}: {self.count}"


class HourlyTally(models.Model):
    """How many copy results of one status a pair had in one hour (by finish time), by lag
    bucket of replication/dashboard/histogram.py."""

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="hourly_tallies", db_index=False
    )
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    status = models.CharField(max_length=10, choices=CopyStatus)
    lag_bucket = models.PositiveSmallIntegerField()
    shard = models.PositiveSmallIntegerField(default=0)
    copies = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["pair", "hour", "status", "lag_bucket", "shard"]
        constraints = [
            # Ingest's ON CONFLICT target; it also serves the charts' range reads
            # (WHERE pair_id = ANY(...) AND hour >= ...).
            models.UniqueConstraint(
                name="hourly_tally_unique",
                fields=["pair", "hour", "status", "lag_bucket", "shard"],
            ),
            models.CheckConstraint(
                name="hourly_tally_status_valid", condition=Q(status__in=CopyStatus.values)
            ),
            models.CheckConstraint(
                name="hourly_tally_shard_in_range", condition=Q(shard__lte=FOLDED)
            ),
            models.CheckConstraint(name="hourly_tally_copies_positive", condition=Q(copies__gte=0)),
        ]
        indexes = [
            # What is not folded yet: the current hour, and late reports since the last fold.
            models.Index(
                fields=["hour", "pair"],
                name="hourly_tally_unfolded_idx",
                condition=Q(shard__lt=FOLDED),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} {self.hour:%Y-%m-%d %H:00} {self.status} bucket {self.lag_bucket}"


class HourlyTotal(models.Model):
    """A pair's copies, failures and lag percentiles over one closed hour: the sum of its
    folded HourlyTally rows (replication/ingest/folding.py writes both together)."""

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="hourly_totals", db_index=False
    )
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    copies = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    # Estimated from the hour's lag histogram (copies and deletes); null when it had none.
    lag_p50 = models.FloatField(null=True)
    lag_p95 = models.FloatField(null=True)
    lag_p99 = models.FloatField(null=True)

    class Meta:
        ordering = ["pair", "hour"]
        constraints = [
            # Also serves the overview's rows (WHERE pair_id = ANY(...) AND hour >= ...).
            models.UniqueConstraint(name="hourly_total_unique", fields=["pair", "hour"]),
            models.CheckConstraint(
                name="hourly_total_counts_positive", condition=Q(copies__gte=0, failures__gte=0)
            ),
        ]
        indexes = [
            # Every pair's day at once, for the overview's totals: an index only scan.
            models.Index(
                fields=["hour"],
                include=["pair", "copies", "failures"],
                name="hourly_total_hour_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} {self.hour:%Y-%m-%d %H:00}: {self.copies} copies"

"""What the monthly evidence is made of, kept 13 months whatever the events' retention.

- FreshnessTally: per pair and UTC day, the copies that finished and how many of them within
  the lag objective in force when ingest stored them (replication/evidence/counting.py).
  Months and 30-day windows are sums of days; a busy pair's month is at most 31 rows per
  objective and shard, however many events it had.
- ObjectiveChange: every change of a pair's lag objective or freshness target, so a report
  can say which objective a month was counted against and when it changed.
"""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from replication.models.pairs import BucketPair
from replication.models.tallies import SHARDS


class FreshnessTally(models.Model):
    """Copies (status ``copied``) a pair finished on one UTC day, counted against one lag
    objective, and how many of them finished within it."""

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="freshness_tallies", db_index=False
    )
    day = models.DateField(help_text="UTC day of the copies' finished_at.")
    objective_seconds = models.PositiveIntegerField(
        help_text="The pair's lag objective when these copies were stored."
    )
    shard = models.PositiveSmallIntegerField(default=0)
    copies = models.BigIntegerField(default=0)
    within = models.BigIntegerField(default=0, help_text="Copies with lag <= the objective.")

    class Meta:
        ordering = ["pair", "day", "objective_seconds", "shard"]
        constraints = [
            # Ingest's ON CONFLICT target; it also serves every reader's range read
            # (WHERE pair_id = ANY(...) AND day >= ... AND day < ...).
            models.UniqueConstraint(
                name="freshness_tally_unique",
                fields=["pair", "day", "objective_seconds", "shard"],
            ),
            models.CheckConstraint(
                name="freshness_tally_shard_in_range", condition=Q(shard__lt=SHARDS)
            ),
            models.CheckConstraint(
                name="freshness_tally_within_of_copies",
                condition=Q(within__gte=0, copies__gte=F("within")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} {self.day}: {self.within} of {self.copies} on time"


class ObjectiveChange(models.Model):
    """One change of a pair's lag objective or freshness target; append-only.

    Written whenever a pair is saved with a value different from the stored one (admin,
    ``add_pair``, code calling ``save()``); a bulk ``QuerySet.update()`` is not seen.
    """

    pair = models.ForeignKey(
        BucketPair, on_delete=models.CASCADE, related_name="objective_changes", db_index=False
    )
    at = models.DateTimeField(default=timezone.now)
    lag_objective_before = models.PositiveIntegerField(help_text="Seconds.")
    lag_objective_after = models.PositiveIntegerField(help_text="Seconds.")
    target_before = models.DecimalField(max_digits=6, decimal_places=3)
    target_after = models.DecimalField(max_digits=6, decimal_places=3)

    class Meta:
        ordering = ["pair", "at", "id"]
        indexes = [
            # A report's "objective in force and its changes" (WHERE pair_id = %s ORDER BY at).
            models.Index(name="objective_change_pair_at", fields=["pair", "at"]),
        ]
        constraints = [
            models.CheckConstraint(
                name="objective_change_is_a_change",
                condition=~Q(lag_objective_before=F("lag_objective_after"))
                | ~Q(target_before=F("target_after")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair_id} at {self.at:%Y-%m-%d %H:%M}"


@receiver(pre_save, sender=BucketPair)
def _note_stored_objective(sender, instance: BucketPair, raw: bool = False, **kwargs) -> None:
    instance._stored_objective = None
    if raw or instance.pk is None:
        return
    instance._stored_objective = (
        BucketPair.objects.filter(pk=instance.pk)
        .values_list("lag_objective_seconds", "freshness_target")
        .first()
    )


@receiver(post_save, sender=BucketPair)
def _record_objective_change(sender, instance: BucketPair, raw: bool = False, **kwargs) -> None:
    stored = getattr(instance, "_stored_objective", None)
    if raw or stored is None:
        return
    before_seconds, before_target = stored
    after_seconds = int(instance.lag_objective_seconds)
    after_target = Decimal(str(instance.freshness_target))
    if before_seconds != after_seconds or before_target != after_target:
        ObjectiveChange.objects.create(
            pair=instance,
            lag_objective_before=before_seconds,
            lag_objective_after=after_seconds,
            target_before=before_target,
            target_after=after_target,
        )

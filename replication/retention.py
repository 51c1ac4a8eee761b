"""Retention of what reconciles and alerts write, so that no table grows for ever.

Per-event rows and hourly tallies are ingest's (replication/ingest/retention.py). Here:

- discrepancy rows and key ranges of a run are kept RECONCILE_DETAIL_RETENTION_DAYS, except
  for each pair's latest finished and latest succeeded run, whose rows the pages show
  whatever their age; the run itself says when its rows went (``discrepancies_purged_at``);
- run summaries are kept RECONCILE_RUN_RETENTION_DAYS (13 months: the monthly evidence report
  covers this month and the twelve before), again never a pair's latest runs;
- health changes and their notifications are kept ALERT_HISTORY_RETENTION_DAYS (13 months),
  never a pair's latest change (the evaluator numbers the next change from it);
- protection check results are kept PROTECTION_RESULT_RETENTION_DAYS (13 months), never a
  check's latest result nor the one in force when the period began (the monthly report's
  oldest month starts from it);
- the state of an object deleted from the source more than EVENT_RETENTION_DAYS ago, that no
  reconcile found lacking since, goes: nothing else will ever be said about it.

Every purge deletes in batches of ``batch_size`` rows, each its own transaction (the ingest
API and the workers keep writing meanwhile), and stops after ``max_batches`` batches: a
months-long backlog is worked off over several hourly runs instead of one long one.
"""

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from replication.models import (
    BucketPair,
    CopyStatus,
    Discrepancy,
    HealthChange,
    Notification,
    ObjectState,
    ProtectionCheck,
    ProtectionResult,
    ReconcileRange,
    ReconcileRun,
)
from replication.models.events import LACKING_FINDINGS

Status = ReconcileRun.Status


@dataclass
class Purged:
    discrepancies: int = 0
    ranges: int = 0
    runs: int = 0
    health_changes: int = 0
    notifications: int = 0
    protection_results: int = 0
    object_states: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Budget:
    """The batches one purge may still run."""

    def __init__(self, batches: int) -> None:
        self.left = batches

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def purge(
    now: datetime | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> Purged:
    """Run every purge once; return how many rows of each kind went."""
    now = now or timezone.now()
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    max_batches = max_batches or settings.RETENTION_MAX_BATCHES
    purged = Purged()
    kept = latest_run_ids()
    purge_run_details(purged, now, batch_size, _Budget(max_batches), kept)
    purge_runs(purged, now, batch_size, _Budget(max_batches), kept)
    purge_alert_history(purged, now, batch_size, _Budget(max_batches))
    purge_protection_results(purged, now, batch_size, _Budget(max_batches))
    purge_deleted_objects(purged, now, batch_size, _Budget(max_batches))
    return purged


def latest_run_ids() -> set[int]:
    """Each pair's latest finished and latest succeeded run: what its pages show."""
    latest = ReconcileRun.objects.filter(pair=OuterRef("pk")).order_by("-created_at", "-id")
    rows = BucketPair.objects.annotate(
        finished=Subquery(
            latest.filter(status__in=[Status.SUCCEEDED, Status.FAILED]).values("id")[:1]
        ),
        succeeded=Subquery(latest.filter(status=Status.SUCCEEDED).values("id")[:1]),
    ).values_list("finished", "succeeded")
    return {run_id for row in rows for run_id in row if run_id is not None}


def purge_run_details(
    purged: Purged, now: datetime, batch_size: int, budget: _Budget, kept: set[int]
) -> None:
    """Discrepancy rows and ranges of finished runs older than the detail window."""
    cutoff = now - timedelta(days=settings.RECONCILE_DETAIL_RETENTION_DAYS)
    while budget.left > 0:
        # Served by reconcile_run_details_kept: only runs whose rows are still there.
        runs = list(
            ReconcileRun.objects.filter(created_at__lt=cutoff, discrepancies_purged_at__isnull=True)
            .exclude(status__in=ReconcileRun.ACTIVE)
            .exclude(id__in=kept)
            .order_by("created_at", "id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not runs:
            return
        for model, field in ((Discrepancy, "discrepancies"), (ReconcileRange, "ranges")):
            rows = model.objects.filter(run_id__in=runs)
            while batch := list(rows.values_list("pk", flat=True)[:batch_size]):
                if not budget.take():
                    return  # these runs are taken up again next time
                count, _ = model.objects.filter(pk__in=batch).delete()
                setattr(purged, field, getattr(purged, field) + count)
        ReconcileRun.objects.filter(id__in=runs).update(discrepancies_purged_at=now)


def purge_runs(
    purged: Purged, now: datetime, batch_size: int, budget: _Budget, kept: set[int]
) -> None:
    """Run summaries older than the run retention, never a pair's latest runs."""
    cutoff = now - timedelta(days=settings.RECONCILE_RUN_RETENTION_DAYS)
    for pair_id in BucketPair.objects.values_list("pk", flat=True):
        expired = (
            ReconcileRun.objects.filter(pair_id=pair_id, created_at__lt=cutoff)
            .exclude(status__in=ReconcileRun.ACTIVE)
            .exclude(id__in=kept)
        )
        while batch := list(
            expired.order_by("created_at").values_list("pk", flat=True)[:batch_size]
        ):
            if not budget.take():
                return
            # Their rows (if any are left) go with them; object states keep their finding,
            # without the link to a run that is gone (finding_run is SET_NULL).
            ReconcileRun.objects.filter(pk__in=batch).delete()
            purged.runs += len(batch)


def purge_alert_history(purged: Purged, now: datetime, batch_size: int, budget: _Budget) -> None:
    """Health changes and notifications older than the alert history retention."""
    cutoff = now - timedelta(days=settings.ALERT_HISTORY_RETENTION_DAYS)
    latest = {
        pair_id: HealthChange.objects.filter(pair_id=pair_id)
        .order_by("-sequence")
        .values_list("id", flat=True)
        .first()
        for pair_id in BucketPair.objects.values_list("pk", flat=True)
    }
    kept = {change_id for change_id in latest.values() if change_id is not None}
    expired = HealthChange.objects.filter(at__lt=cutoff).exclude(id__in=kept)
    while batch := list(expired.order_by("at").values_list("pk", flat=True)[:batch_size]):
        if not budget.take():
            return
        # Notifications first, so that each statement stays within the batch.
        purged.notifications += Notification.objects.filter(change_id__in=batch).delete()[0]
        purged.health_changes += HealthChange.objects.filter(pk__in=batch).delete()[0]
    # Test notifications belong to no change.
    tests = Notification.objects.filter(change__isnull=True, created_at__lt=cutoff)
    while batch := list(tests.order_by("created_at").values_list("pk", flat=True)[:batch_size]):
        if not budget.take():
            return
        purged.notifications += Notification.objects.filter(pk__in=batch).delete()[0]


def purge_protection_results(
    purged: Purged, now: datetime, batch_size: int, budget: _Budget
) -> None:
    """Protection check results older than their retention, check by check of each pair.

    Kept whatever their age: the check's latest result (the pages, health and /metrics read
    it), and the last one before the cutoff. A check's state holds until its next result, so
    that one says what was in force when the period began; the monthly report reads it for
    the start of its oldest month.
    """
    cutoff = now - timedelta(days=settings.PROTECTION_RESULT_RETENTION_DAYS)
    for pair_id in BucketPair.objects.values_list("pk", flat=True):
        for check in ProtectionCheck.values:
            # Range scans of protection_history_idx (pair, check_id, -checked_at).
            history = ProtectionResult.objects.filter(pair_id=pair_id, check_id=check)
            in_force = (
                history.filter(checked_at__lt=cutoff)
                .order_by("-checked_at", "-id")
                .values_list("pk", "checked_at")
                .first()
            )
            if in_force is None:
                continue
            in_force_id, in_force_at = in_force
            expired = (
                history.filter(checked_at__lte=in_force_at)
                .exclude(pk=in_force_id)
                .exclude(is_latest=True)
            )
            while batch := list(
                expired.order_by("checked_at").values_list("pk", flat=True)[:batch_size]
            ):
                if not budget.take():
                    return
                purged.protection_results += ProtectionResult.objects.filter(pk__in=batch).delete()[
                    0
                ]


def purge_deleted_objects(purged: Purged, now: datetime, batch_size: int, budget: _Budget) -> None:
    """States of objects deleted longer ago than the events' retention, with no finding
    since that says the backup lacks them."""
    cutoff = now - timedelta(days=settings.EVENT_RETENTION_DAYS)
    for pair_id in BucketPair.objects.values_list("pk", flat=True):
        # A range scan of object_state_deleted_idx, pair by pair.
        gone = (
            ObjectState.objects.filter(
                pair_id=pair_id, status=CopyStatus.DELETED, finished_at__lt=cutoff
            )
            .exclude(finding__in=LACKING_FINDINGS)
            .filter(Q(finding_at__isnull=True) | Q(finding_at__lt=cutoff))
        )
        while batch := list(gone.order_by("finished_at").values_list("pk", flat=True)[:batch_size]):
            if not budget.take():
                return
            purged.object_states += ObjectState.objects.filter(pk__in=batch).delete()[0]

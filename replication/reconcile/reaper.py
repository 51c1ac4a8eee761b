"""Ending a run failed: by a range that failed, or by the reaper when its workers are gone.

Every change is a conditional update on the run row, so a run that finished meanwhile, or a
slow worker that reported a moment ago, is never failed.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from replication.models import ReconcileRange, ReconcileRun
from replication.reconcile.locks import retrying_deadlocks

Status = ReconcileRun.Status
RangeStatus = ReconcileRange.Status


def fail_run(
    run_id: int,
    reason: str,
    *,
    statuses: Iterable[str] = ReconcileRun.ACTIVE,
    heartbeat_before: datetime | None = None,
) -> bool:
    """Mark a run failed with a one-line reason, unless it already ended. True if it was.

    ``heartbeat_before`` makes it conditional on the run still being silent, in the same
    statement: a slow worker that reported a moment ago is not failed.
    """
    now = timezone.now()
    runs = ReconcileRun.objects.filter(id=run_id, status__in=list(statuses))
    if heartbeat_before is not None:
        runs = runs.filter(heartbeat_at__lt=heartbeat_before)

    def fail() -> int:
        with transaction.atomic():
            # The run before its ranges, as everywhere (replication/reconcile/locks.py).
            failed = runs.update(
                status=Status.FAILED, finished_at=now, heartbeat_at=now, error=reason[:2000]
            )
            if failed:
                ReconcileRange.objects.filter(
                    run_id=run_id, status__in=[RangeStatus.QUEUED, RangeStatus.RUNNING]
                ).update(status=RangeStatus.FAILED)
        return failed

    return bool(retrying_deadlocks(fail, what=f"failing reconcile run {run_id}"))


def reap_stalled_runs(now: datetime | None = None, *, pair_id: int | None = None) -> list[int]:
    """Fail runs whose workers are gone: running without a heartbeat, or queued for too long.

    A running run whose range tasks still wait in the broker's queue (behind other pairs'
    work) is waiting for a worker, as a queued run is: it has RECONCILE_QUEUED_TIMEOUT from
    its last heartbeat, not RECONCILE_HEARTBEAT_TIMEOUT, unless one of its ranges is held by
    a silent worker. Only runs of several ranges have range tasks (a one-range run's range is
    run by its own task, right after the claim); without a broker (tasks run in-process)
    nothing waits in a queue, and a queued range means the process that ran the run is gone.
    Beat calls it every minute for all pairs; ``request_run`` for one pair, lazily.
    """
    now = now or timezone.now()
    silent_since = now - timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    queued_since = now - timedelta(seconds=settings.RECONCILE_QUEUED_TIMEOUT)
    reaped = []
    runs = (
        ReconcileRun.objects.all()
        if pair_id is None
        else ReconcileRun.objects.filter(pair_id=pair_id)
    )
    stalled = runs.filter(status=Status.RUNNING, heartbeat_at__lt=silent_since)
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        ranges = ReconcileRange.objects.filter(run=OuterRef("pk"))
        waiting_in_queue = Exists(ranges.filter(status=RangeStatus.QUEUED)) & ~Exists(
            ranges.filter(status=RangeStatus.RUNNING, heartbeat_at__lt=silent_since)
        )
        stalled = stalled.exclude(
            waiting_in_queue & Q(ranges_total__gt=1, heartbeat_at__gte=queued_since)
        )
    for run_id, heartbeat_at in stalled.values_list("id", "heartbeat_at"):
        if heartbeat_at < queued_since and _waits_in_queue(run_id):
            reason = (
                f"its ranges waited {settings.RECONCILE_QUEUED_TIMEOUT // 60} minutes in the "
                "queue with no worker taking them: check that Celery workers are running and "
                "keep up with the queue"
            )
        else:
            reason = (
                "the worker stopped reporting (no heartbeat since "
                f"{heartbeat_at:%Y-%m-%d %H:%M:%S} UTC): it was killed, lost its connection "
                "or ran out of memory. Run it again."
            )
        if fail_run(run_id, reason, statuses=[Status.RUNNING], heartbeat_before=silent_since):
            reaped.append(run_id)
    never_started = runs.filter(status=Status.QUEUED, heartbeat_at__lt=queued_since)
    for run_id in never_started.values_list("id", flat=True):
        reason = (
            f"no worker started it within {settings.RECONCILE_QUEUED_TIMEOUT // 60} minutes: "
            "check that a Celery worker is running and reaches the broker"
        )
        if fail_run(run_id, reason, statuses=[Status.QUEUED], heartbeat_before=queued_since):
            reaped.append(run_id)
    return reaped


def _waits_in_queue(run_id: int) -> bool:
    return (
        not settings.CELERY_TASK_ALWAYS_EAGER
        and ReconcileRange.objects.filter(
            run_id=run_id, run__ranges_total__gt=1, status=RangeStatus.QUEUED
        ).exists()
    )

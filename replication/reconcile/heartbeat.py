"""A run's heartbeat: how a working range shows that its run and itself are alive.

A running run whose heartbeat stops lost its worker (replication/reconcile/reaper.py fails
it); a range whose heartbeat stops may be claimed again by a redelivered task.
"""

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from replication.models import ReconcileRange, ReconcileRun

Status = ReconcileRun.Status
RangeStatus = ReconcileRange.Status
# Told how many objects were scanned since the last call (the command's progress bar).
ProgressCallback = Callable[[int], None]


class RunAbandoned(Exception):
    """The run stopped being ours (failed by another range or by the reaper): stop working."""


class RangeSuperseded(Exception):
    """A redelivery claimed this range again after this attempt looked dead: stop working."""


class Heartbeat:
    """Saves progress and the heartbeat every few seconds; reports progress more often.

    The save is conditional on the run still running: a run failed meanwhile (by another
    range or by the reaper) raises RunAbandoned here, and this range stops. Repair counts
    given to ``count`` go out with the next save, so a page shows the copying live.
    """

    def __init__(
        self,
        run_id: int,
        on_progress: ProgressCallback | None = None,
        *,
        key_range: ReconcileRange | None = None,
    ):
        self.run_id = run_id
        self.key_range = key_range
        self.on_progress = on_progress
        self.every = settings.RECONCILE_PROGRESS_SECONDS
        self.saved_at = time.monotonic()
        self.saved = 0
        self.reported = 0
        self.counted: dict[str, int] = {}

    def count(self, **increments: int) -> None:
        """Add to run counters (repair_total, repaired, repair_failed) at the next save."""
        for name, n in increments.items():
            self.counted[name] = self.counted.get(name, 0) + n

    def beat(self, scanned: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.saved_at >= self.every:
            counted = {name: F(name) + n for name, n in self.counted.items() if n}
            updated = ReconcileRun.objects.filter(id=self.run_id, status=Status.RUNNING).update(
                objects_scanned=F("objects_scanned") + (scanned - self.saved),
                heartbeat_at=timezone.now(),
                **counted,
            )
            if not updated:
                raise RunAbandoned
            self.counted = {}
            if self.key_range is not None:
                ours = ReconcileRange.objects.filter(
                    id=self.key_range.id, attempt=self.key_range.attempt
                ).update(heartbeat_at=timezone.now())
                if not ours:
                    raise RangeSuperseded
            self.saved, self.saved_at = scanned, now
        if self.on_progress and scanned != self.reported:
            self.on_progress(scanned - self.reported)
            self.reported = scanned


def seconds_until_stale(run_id: int, index: int) -> float | None:
    """How long until ``claim_range`` may take this range from the attempt that holds it.

    None unless the range is running, in a running run, with a heartbeat younger than
    RECONCILE_HEARTBEAT_TIMEOUT: a task that finds it so cannot tell a live worker from one
    that died moments ago, and must look again once a live one would have reported.
    """
    heartbeat_at = (
        ReconcileRange.objects.filter(
            run_id=run_id, index=index, status=RangeStatus.RUNNING, run__status=Status.RUNNING
        )
        .values_list("heartbeat_at", flat=True)
        .first()
    )
    if heartbeat_at is None:
        return None
    stale_at = heartbeat_at + timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    return max(0.0, (stale_at - timezone.now()).total_seconds())


def keep_run_alive(run_id: int, now: datetime | None = None) -> None:
    """Show a running run alive from ``now``, which keeps the reaper off it for another
    RECONCILE_HEARTBEAT_TIMEOUT: a range was just taken over, or will be by a waiting retry."""
    ReconcileRun.objects.filter(id=run_id, status=Status.RUNNING).update(
        heartbeat_at=now or timezone.now()
    )

"""Celery tasks: thin wrappers that take primary keys and hand the work to plain modules.

Every task is JSON-serialisable and safe to run twice.
"""

import logging
import math

from celery import chord, shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from django.utils import timezone

from replication import retention as record_retention
from replication.alerts.tasks import deliver_notification, evaluate_health
from replication.evidence import counting as evidence_counting
from replication.ingest import folding, retention
from replication.models import BucketPair, ReconcileRun, RestoreDrill
from replication.protection.tasks import (
    check_all_protection,
    check_protection,
    evaluate_guards,
    recompute_guard_usual,
)
from replication.reconcile import heartbeat, inline, reaper, settle
from replication.reconcile import run as reconcile
from replication.reconcile.queue import ReconcileFailed, start_reconcile
from replication.restore import drill as drills
from replication.restore import job as restores
from replication.restore.queue import start_restore

# Other rooms' tasks, found by autodiscovery through this module; start_reconcile and
# ReconcileFailed live in replication/reconcile/queue.py, below the pages that call them.
__all__ = [
    "ReconcileFailed",
    "check_all_protection",
    "check_protection",
    "deliver_notification",
    "evaluate_guards",
    "evaluate_health",
    "recompute_guard_usual",
    "start_reconcile",
    "start_restore",
]

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def fold_closed_hours() -> int:
    """Fold closed hours' tallies and roll them up into HourlyTotal (beat, every 5 minutes)."""
    return folding.fold_closed_hours()


@shared_task(ignore_result=True)
def purge_expired_events() -> int:
    """Delete per-event rows older than EVENT_RETENTION_DAYS (scheduled by beat, hourly)."""
    evidence_counting.upkeep(timezone.now())  # kept 13 months, whatever EVENT_RETENTION_DAYS
    return retention.purge_expired_events()


@shared_task(ignore_result=True)
def purge_expired_records() -> dict:
    """Delete what reconciles and alerts wrote beyond its retention, in bounded batches
    (scheduled by beat, hourly; replication/retention.py)."""
    return record_retention.purge().as_dict()


# --- Reconcile --------------------------------------------------------------------------------
# The work is in replication/reconcile/ (run.py and its neighbours); these decide only where
# it runs. A failed run is not retried: it is saved with its reason, and the schedule or an
# operator reruns it. The one retry is of a redelivered task that finds its range held
# (_look_again_once_stale).


def _raise_if_failed(run_id: int) -> None:
    run = ReconcileRun.objects.select_related("pair").filter(id=run_id).first()
    if run is not None and run.status == ReconcileRun.Status.FAILED:
        message = f"reconcile #{run_id} of {run.pair.name} failed: {run.error}"
        # In-process mode (no worker) has no Celery line for it: this is the one that says so.
        log.warning("%s", message)
        raise ReconcileFailed(run_id, message)


@worker_process_init.connect  # each child of the prefork pool, where its tasks run
@worker_ready.connect  # the threads and solo pools run tasks in the worker's own process
def _spare_the_garbage_collector(**_) -> None:
    # With the embedded S3 (development), a client made here would start that server in
    # every worker process, reconciling or not.
    inline.spare_the_garbage_collector(clients=not settings.EMBEDDED_S3)


@shared_task(bind=True, acks_late=True, throws=(ReconcileFailed,), max_retries=None)
def reconcile_pair(
    self, pair_id: int, repair: bool = False, trigger: str = "manual", run_id: int | None = None
) -> int | None:
    """Reconcile a pair; returns the run's id (the active one if the pair already had one).

    Called with ``run_id`` for a run made by ``start_reconcile`` (whose row already says
    repair and trigger), or without, in which case a run is requested here.
    """
    if run_id is None:
        pair = BucketPair.objects.filter(id=pair_id).first()
        if pair is None:
            return None
        run, created = reconcile.request_run(pair, trigger=trigger, repair=repair)
        if not created:
            return run.id
        run_id = run.id
    run = reconcile.claim_run(run_id)
    if run is None:
        # Delivered twice, failed before a worker took it, or redelivered after its worker
        # died: a one-range run has no range task of its own, so its range is retried here.
        if ReconcileRun.objects.filter(
            id=run_id, status=ReconcileRun.Status.RUNNING, ranges_total=1
        ).exists():
            if not reconcile.run_range(run_id, 0):
                _look_again_once_stale(self, run_id, 0)
            reconcile.finish_run(run_id)
        return run_id
    if run.ranges_total == 1:
        reconcile.run_range(run_id, 0)
        reconcile.finish_run(run_id)
        _evaluate_health_after(run_id)
        _raise_if_failed(run_id)
        return run_id
    # The ranges go to the queue this task came from: a dedicated reconcile queue keeps them.
    queue = (self.request.delivery_info or {}).get("routing_key")
    options = {"queue": queue} if queue else {}
    header = [reconcile_range.si(run_id, index).set(**options) for index in range(run.ranges_total)]
    try:
        chord(header)(finish_reconcile.si(run_id).set(**options))
    except Exception as exc:  # broker gone: the run must not stay "running"
        reaper.fail_run(run_id, f"could not queue its {len(header)} range tasks: {exc}")
        raise
    return run_id


@shared_task(bind=True, acks_late=True, max_retries=None)
def reconcile_range(self, run_id: int, index: int) -> None:
    """One key range of a run; a group of these runs on as many workers as are free."""
    if not reconcile.run_range(run_id, index):
        _look_again_once_stale(self, run_id, index)


def _look_again_once_stale(task, run_id: int, index: int) -> None:
    """Retry when the attempt holding the range would have gone stale, if one holds it.

    A redelivered task can arrive while the range's heartbeat is still fresh: its worker is
    either alive (delivered twice) or died moments ago. Leaving the range would leave a dead
    worker's run to the reaper; looking again once a live worker would have reported lets
    ``claim_range`` take it over, or finds it done.
    """
    if task.request.is_eager:  # in-process runs have no redeliveries
        return
    wait = heartbeat.seconds_until_stale(run_id, index)
    if wait is None:
        return
    # claim_range wants the heartbeat strictly older, hence the second. The run is kept
    # alive from now, so that the reaper cannot fail it between the range going stale and
    # the retry, and the retry comes before that keep-alive runs out: one that comes too
    # early finds the range still held and looks again.
    timeout = settings.RECONCILE_HEARTBEAT_TIMEOUT
    countdown = max(1, min(math.ceil(wait) + 1, timeout - 1))
    heartbeat.keep_run_alive(run_id)
    log.warning(
        "reconcile run %s range %s: redelivered while another attempt holds it; "
        "looking again in %s s",
        run_id,
        index,
        countdown,
    )
    raise task.retry(countdown=countdown)


@shared_task(acks_late=True, throws=(ReconcileFailed,))
def finish_reconcile(run_id: int) -> None:
    """The chord's body: combine the ranges' counts once all of them are done."""
    reconcile.finish_run(run_id)
    _evaluate_health_after(run_id)
    _raise_if_failed(run_id)


def _evaluate_health_after(run_id: int) -> None:
    """A finished run may change its pair's health: alert now, not at the next beat tick."""
    pair_id = ReconcileRun.objects.filter(id=run_id).values_list("pair_id", flat=True).first()
    if pair_id is None:
        return
    try:
        evaluate_health.delay([pair_id])
    except Exception:  # the run is done whatever happens here; beat evaluates within a minute
        log.exception("run %s: could not evaluate its pair's health", run_id)


@shared_task(ignore_result=True)
def dispatch_due_reconciles() -> list[int]:
    """Beat, every minute: start a scheduled run for each pair whose interval has elapsed."""
    started = []
    for pair in reconcile.due_pairs():
        run, created = start_reconcile(pair, trigger=ReconcileRun.Trigger.SCHEDULED)
        if created and run.status != ReconcileRun.Status.FAILED:
            started.append(run.id)
    return started


@shared_task(ignore_result=True)
def settle_in_flight() -> dict[str, int]:
    """Beat, every minute: objects runs found in flight whose grace has passed are checked
    again on both sides and settle as in sync or missing (replication/reconcile/settle.py)."""
    return settle.settle_due()


@shared_task(ignore_result=True)
def reap_stalled_reconciles() -> list[int]:
    """Beat, every minute: fail runs whose worker died, so none is left "running"."""
    return reaper.reap_stalled_runs()


# --- Restore and restore drills ----------------------------------------------------------------
# The work is in replication/restore/. A restore whose worker died is queued again by the
# reaper and resumed by the next attempt; a drill is not retried (the next one is scheduled).


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def restore_job(self, job_id: int) -> None:
    """Carry out a restore job, or resume it; nothing when it is finished or alive elsewhere.

    Redelivered after its worker died, it may find the dead worker's heartbeat still fresh:
    it looks again once that heartbeat would be stale (as a reconcile's range does), and
    takes the job over then, or finds it finished by a live worker.
    """
    if restores.run_job(job_id) is not None or self.request.is_eager:
        return
    wait = restores.seconds_until_stale(job_id)
    if wait is None:
        return
    countdown = max(1, min(math.ceil(wait) + 1, settings.RECONCILE_HEARTBEAT_TIMEOUT))
    log.warning(
        "restore #%s: redelivered while another attempt holds it; looking again in %s s",
        job_id,
        countdown,
    )
    raise self.retry(countdown=countdown)


@shared_task(ignore_result=True)
def reap_stalled_restores() -> list[int]:
    """Beat, every minute: queue again the restores whose worker died; end stalled drills."""
    again = restores.reap_stalled_jobs()
    for job_id in again:
        restore_job.delay(job_id)
    drills.reap_stalled_drills()
    return again


@shared_task(ignore_result=True)
def run_restore_drill(drill_id: int) -> None:
    drills.run_drill(drill_id)


@shared_task(ignore_result=True)
def dispatch_due_drills() -> list[int]:
    """Beat: start a restore drill of each pair whose interval has elapsed."""
    started = []
    for pair in drills.due_pairs():
        try:
            drill = drills.start_drill(pair, trigger=RestoreDrill.Trigger.SCHEDULED)
        except drills.DrillRefused:
            continue
        run_restore_drill.delay(drill.id)
        started.append(drill.id)
    return started

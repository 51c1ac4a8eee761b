"""Starting a run from a page, the admin or the dispatcher: request it, then queue it.

Views and the admin call this instead of importing replication/tasks.py, the Celery entry
points above them: the task is found by its name in Celery's registry, where the worker and
every web process have it (the app's autodiscovery imports replication.tasks). Queued
through ``apply_async``, so without a broker (no REDIS_URL) it runs here, in-process.
"""

from celery import current_app

from replication.models import BucketPair, ReconcileRun
from replication.reconcile import reaper
from replication.reconcile import run as reconcile

RECONCILE_TASK = "replication.tasks.reconcile_pair"
# The reason a run that never reached the queue is failed with; pages look for it.
QUEUE_UNAVAILABLE = "the task queue is unavailable, so the run was not queued"


class ReconcileFailed(Exception):
    """The run ended failed (its reason is saved on it). Raised so that Celery's log and
    result say the task failed, not "succeeded"; declared expected, so no traceback."""

    def __init__(self, run_id: int, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


def task_named(name: str):
    """A task from Celery's registry, by name."""
    if name not in current_app.tasks:
        # A web process that has not needed a task yet: Celery's autodiscovery imports the
        # apps' task modules (what a worker does when it starts).
        current_app.loader.import_default_modules()
    return current_app.tasks[name]


def reconcile_task():
    """The reconcile task, from Celery's registry."""
    return task_named(RECONCILE_TASK)


def was_not_queued(run: ReconcileRun) -> bool:
    """True for a run that failed because the broker refused it, not because it ran."""
    return run.status == ReconcileRun.Status.FAILED and run.error.startswith(QUEUE_UNAVAILABLE)


def start_reconcile(
    pair: BucketPair, *, trigger: str, requested_by=None, repair: bool = False
) -> tuple[ReconcileRun, bool]:
    """Request a run and queue it: ``(run, created)``; the pair's active run if it has one.

    Never raises for a broker outage: the run is saved as failed with the reason instead, so
    the page that asked can say so.
    """
    run, created = reconcile.request_run(
        pair, trigger=trigger, requested_by=requested_by, repair=repair
    )
    if not created:
        return run, False
    try:
        result = reconcile_task().apply_async(args=(pair.id,), kwargs={"run_id": run.id})
    except ReconcileFailed:
        # In-process mode (no REDIS_URL) ran it here already; the run says why it failed.
        run.refresh_from_db()
        return run, True
    except Exception as exc:
        reaper.fail_run(run.id, f"{QUEUE_UNAVAILABLE}: {exc}")
        run.refresh_from_db()
        return run, True
    ReconcileRun.objects.filter(id=run.id, celery_task_id="").update(celery_task_id=result.id)
    run.refresh_from_db()
    return run, True

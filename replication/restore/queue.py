"""Starting a restore job or a drill from a page or the command: queue it by the task's name.

Pages call this instead of importing replication/tasks.py, the Celery entry points above
them (as replication/reconcile/queue.py does for runs). Without a broker (no REDIS_URL) the
job runs here, in-process.
"""

from django.utils import timezone

from replication.models import RestoreDrill, RestoreJob
from replication.reconcile.queue import QUEUE_UNAVAILABLE, task_named
from replication.restore import job as restores

RESTORE_TASK = "replication.tasks.restore_job"
DRILL_TASK = "replication.tasks.run_restore_drill"


def start_restore(job: RestoreJob) -> RestoreJob:
    """Queue a created job. Never raises for a broker outage: the job is failed with the
    reason instead, so the page that asked can say so."""
    try:
        result = task_named(RESTORE_TASK).apply_async(args=(job.id,))
    except Exception as exc:
        restores.fail_job(job.id, f"{QUEUE_UNAVAILABLE}: {exc}")
    else:
        RestoreJob.objects.filter(id=job.id, celery_task_id="").update(celery_task_id=result.id)
    job.refresh_from_db()
    return job


def start_drill_task(drill: RestoreDrill) -> RestoreDrill:
    """Queue a started drill (without a broker it runs here, and has ended on return).
    Never raises for a broker outage: the drill ends as ``error`` with the reason."""
    task = task_named(DRILL_TASK)
    try:
        task.apply_async(args=(drill.id,))
    except Exception as exc:
        # In-process, the drill itself raised (run_drill records S3's errors, not these).
        why = "the drill stopped" if task.app.conf.task_always_eager else QUEUE_UNAVAILABLE
        RestoreDrill.objects.filter(id=drill.id, status=RestoreDrill.Status.RUNNING).update(
            status=RestoreDrill.Status.ERROR, error=f"{why}: {exc}", finished_at=timezone.now()
        )
    drill.refresh_from_db()
    return drill

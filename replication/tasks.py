"""Celery tasks: thin wrappers that take primary keys and hand the work to plain modules.

Every task is JSON-serialisable and safe to run twice.
"""

from celery import shared_task

from replication.ingest import retention


@shared_task(ignore_result=True)
def purge_expired_events() -> int:
    """Delete per-event rows older than EVENT_RETENTION_DAYS (scheduled by beat, hourly)."""
    return retention.purge_expired_events()

"""Celery tasks for alerts: thin, taking ids; the work is in evaluate.py and delivery.py."""

import logging

from celery import current_app, shared_task
from django.conf import settings
from django.db import transaction

from replication.alerts import delivery
from replication.alerts.evaluate import evaluate
from replication.models import BucketPair

logger = logging.getLogger(__name__)


class RetryDelivery(Exception):
    """Raised to have Celery retry a delivery (with the backoff declared on the task)."""


@shared_task(ignore_result=True)
def evaluate_health(pair_ids: list[int] | None = None) -> dict:
    """Beat, every minute, and after each reconcile: record changes, queue their messages."""
    pairs = BucketPair.objects.filter(id__in=pair_ids) if pair_ids is not None else None
    result = evaluate(pairs)
    # Flapping pairs' held messages, summed up once they settle (replication/alerts/delivery.py).
    summaries = delivery.release_summaries()
    queue_deliveries(result.notifications + result.retries + summaries)
    return {
        "changes": len(result.changes),
        "notifications": len(result.notifications),
        "retries": len(result.retries),
        "summaries": len(summaries),
    }


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(RetryDelivery,),
    retry_backoff=settings.ALERT_RETRY_BACKOFF,
    retry_backoff_max=settings.ALERT_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=settings.ALERT_DELIVERY_ATTEMPTS - 1,
)
def deliver_notification(self, notification_id: int) -> str:
    """Send one notification; a failure is recorded on the row, then retried by Celery."""
    outcome = delivery.attempt(notification_id)
    if outcome == delivery.Outcome.RETRY:
        raise RetryDelivery(f"notification {notification_id}: delivery failed, will retry")
    return str(outcome)


def queue_deliveries(notification_ids: list[int]) -> None:
    """Hand notifications to the workers, or, without a broker, try each once right here.

    Eager Celery would run a task's retries back to back inside the caller (a web request
    after a reconcile); one attempt each, bounded by the channels' timeouts, is what a
    request can afford. What fails waits for the next evaluation's sweep.
    """
    if not notification_ids:
        return
    if current_app.conf.task_always_eager:
        for notification_id in notification_ids:
            delivery.attempt(notification_id)
        return

    def send() -> None:
        for notification_id in notification_ids:
            try:
                deliver_notification.delay(notification_id)
            except Exception as exc:  # broker down: the rows stay pending for the sweep
                logger.warning("could not queue notification deliveries: %s", exc)
                return

    transaction.on_commit(send)

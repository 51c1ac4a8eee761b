"""One delivery attempt of one notification: claim it, send it, record what happened.

A notification is claimed by a conditional UPDATE (pending, or sending with an expired
lease), so two workers given the same notification (a redelivered task, a task queued by
the sweep while a retry was also scheduled) send it once. The lease covers a worker that
died mid-send: its claim expires and the notification is sent again. That is the one case
a receiver may see a message twice, and why the webhook payload carries an ``id``.
"""

import enum
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from replication.alerts import channels, messages
from replication.alerts.rules import Kind, retry_delay
from replication.models import Notification

logger = logging.getLogger(__name__)

Status = Notification.Status

# How long a claim holds: longer than any send can take (HTTP and SMTP time out sooner).
LEASE = timedelta(minutes=2)


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # failed; attempts remain
    FAILED = "failed"  # failed for the last time
    SKIPPED = "skipped"  # already sent, being sent, or gone


def attempt(notification_id: int, now: datetime | None = None) -> Outcome:
    """Try to send the notification once, unless it is done or another worker holds it."""
    now = now or timezone.now()
    claimed = (
        Notification.objects.filter(id=notification_id)
        .filter(Q(status=Status.PENDING) | Q(status=Status.SENDING, claimed_at__lt=now - LEASE))
        .update(
            status=Status.SENDING,
            claimed_at=now,
            next_attempt_at=now + LEASE,
            attempts=F("attempts") + 1,
        )
    )
    if not claimed:
        return Outcome.SKIPPED
    notification = Notification.objects.select_related("channel", "change__pair").get(
        id=notification_id
    )
    mine = Notification.objects.filter(id=notification_id, status=Status.SENDING, claimed_at=now)
    # A test may try a channel before it is enabled; alerts go to enabled channels only.
    if not notification.channel.enabled and notification.kind != Notification.Kind.TEST:
        mine.update(status=Status.FAILED, last_error="the channel was disabled before delivery")
        return Outcome.FAILED
    try:
        channels.send(notification.channel, message_for(notification, now))
    except Exception as exc:
        if isinstance(exc, channels.DeliveryError):
            error = str(exc)
        else:  # a bug, not the receiver: keep the traceback (it holds no secret) for us
            logger.exception("notification %s: unexpected error while sending", notification_id)
            error = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "notification %s to channel %r, attempt %s failed: %s",
            notification_id,
            notification.channel.name,
            notification.attempts,
            error,
        )
        if notification.attempts >= settings.ALERT_DELIVERY_ATTEMPTS:
            mine.update(status=Status.FAILED, last_error=error[:2000])
            return Outcome.FAILED
        delay = retry_delay(
            notification.attempts, settings.ALERT_RETRY_BACKOFF, settings.ALERT_RETRY_BACKOFF_MAX
        )
        mine.update(status=Status.PENDING, last_error=error[:2000], next_attempt_at=now + delay)
        return Outcome.RETRY
    mine.update(status=Status.SENT, sent_at=timezone.now())
    return Outcome.SENT


def message_for(notification: Notification, now: datetime) -> messages.Message:
    change = notification.change
    channel = notification.channel
    if change is None:
        return messages.Message(
            kind=Kind.TEST,
            pair="",
            state="",
            previous_state="",
            reason="test notification",
            since=now,
            at=now,
            url=f"{settings.SITE_URL}/",
            notification_id=notification.id,
            channel=channel.name,
        )
    return messages.Message(
        kind=Kind(notification.kind),
        pair=change.pair.name,
        state=notification.state or change.to_state,
        previous_state=change.from_state,
        reason=notification.reason or change.reason,
        since=change.at,
        at=now,
        url=pair_url(change.pair.name),
        notification_id=notification.id,
        reminder=notification.sequence,
        channel=channel.name,
    )


def pair_url(name: str) -> str:
    return f"{settings.SITE_URL}/pairs/{name}/"


def due_for_retry(now: datetime | None = None) -> list[int]:
    """Unfinished notifications nobody is retrying: their retry time passed a while ago.

    Celery retries a failed delivery itself; this finds those whose retry was lost (the
    broker was down when it was queued, the worker holding the countdown died) or that were
    never queued. The margin leaves Celery's own retry time to run first.
    """
    now = now or timezone.now()
    margin = timedelta(seconds=settings.ALERT_SWEEP_MARGIN)
    return list(
        Notification.objects.filter(
            status__in=[Status.PENDING, Status.SENDING], next_attempt_at__lte=now - margin
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:500]
    )


def send_test(channel, now: datetime | None = None) -> Notification:
    """Send a test message to ``channel`` now, once, recorded like any other delivery."""
    now = now or timezone.now()
    notification = Notification.objects.create(
        channel=channel, kind=Notification.Kind.TEST, created_at=now, next_attempt_at=now
    )
    if attempt(notification.id, now) == Outcome.RETRY:
        # A test is for the person looking at the admin now: no retries behind their back.
        Notification.objects.filter(id=notification.id, status=Status.PENDING).update(
            status=Status.FAILED
        )
    notification.refresh_from_db()
    return notification

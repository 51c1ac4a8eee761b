"""One delivery attempt of one notification: claim it, send it, record what happened.

A notification is claimed by a conditional UPDATE (pending, or sending with an expired
lease), so two workers given the same notification (a redelivered task, a task queued by
the sweep while a retry was also scheduled) send it once. The lease covers a worker that
died mid-send: its claim expires and the notification is sent again. That is the one case
a receiver may see a message twice, and why the webhook payload carries an ``id``.

The flapping damper sits here, between the claim and the send: an alert or resolution of a
pair that keeps changing state (``rules.flapping``) is held instead of sent, and
``release_summaries``, run with every evaluation, turns each channel's held messages of a
pair into one summary once the pair settles, or at most once a window while it does not.
"""

import enum
import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from replication.alerts import channels, messages, rules
from replication.alerts.rules import Kind, retry_delay
from replication.models import HealthChange, Notification
from replication.status.health import State

logger = logging.getLogger(__name__)

Status = Notification.Status

# How long a claim holds: longer than any send can take (HTTP and SMTP time out sooner).
LEASE = timedelta(minutes=2)


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # failed; attempts remain
    FAILED = "failed"  # failed for the last time
    SKIPPED = "skipped"  # already sent, being sent, or gone
    HELD = "held"  # the pair is flapping: kept for its summary


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
    if _damped(notification):
        mine.update(status=Status.HELD, last_error="held: the pair is flapping; a summary follows")
        logger.info("notification %s held: pair is flapping", notification_id)
        return Outcome.HELD
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
    kind = Kind(notification.kind)
    return messages.Message(
        kind=kind,
        pair=change.pair.name,
        state=notification.state or change.to_state,
        # A summary spans many changes: "was ..." would name only the last one's.
        previous_state="" if kind == Kind.SUMMARY else change.from_state,
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


# --- The flapping damper ----------------------------------------------------------------------


def _flap_settings() -> tuple[int, timedelta, timedelta]:
    return (
        settings.ALERT_FLAP_CHANGES,
        timedelta(minutes=settings.ALERT_FLAP_WINDOW_MINUTES),
        timedelta(minutes=settings.ALERT_FLAP_SETTLE_MINUTES),
    )


def _damped(notification: Notification) -> bool:
    """Hold this alert or resolution? Yes when its pair was flapping at its change, or when
    earlier messages of the pair to this channel wait for their summary (order is kept)."""
    if notification.kind not in (Notification.Kind.ALERT, Notification.Kind.RESOLVED):
        return False
    threshold, window, _ = _flap_settings()
    if threshold <= 0:
        return False
    change = notification.change
    held_before = Notification.objects.filter(
        channel_id=notification.channel_id,
        change__pair_id=change.pair_id,
        status=Status.HELD,
    ).exists()
    if held_before:
        return True
    recent = HealthChange.objects.filter(
        pair_id=change.pair_id, at__gt=change.at - window, at__lte=change.at
    ).values_list("from_state", "to_state", "at")
    history = [(State(f) if f else None, State(t), at) for f, t, at in recent]
    return rules.flapping(history, change.at, threshold, window)


def release_summaries(now: datetime | None = None) -> list[int]:
    """Turn held messages whose summary is due into one summary per pair and channel; return
    the ids to send. Run with every evaluation; two at once summarise once (row locks)."""
    now = now or timezone.now()
    _, window, settle = _flap_settings()
    groups = (
        Notification.objects.filter(status=Status.HELD)
        .values("channel_id", "change__pair_id")
        .annotate(held_since=Min("created_at"))
    )
    released = []
    for group in groups:
        pair_id, channel_id = group["change__pair_id"], group["channel_id"]
        last = HealthChange.objects.filter(pair_id=pair_id).order_by("-sequence").first()
        if last is None or not rules.summary_due(group["held_since"], last.at, now, settle, window):
            continue
        summary = _summarise(pair_id, channel_id, last, now)
        if summary is not None:
            released.append(summary)
    return released


def _summarise(pair_id: int, channel_id: int, last: HealthChange, now: datetime) -> int | None:
    with transaction.atomic():
        held = list(
            Notification.objects.select_for_update()
            .filter(channel_id=channel_id, change__pair_id=pair_id, status=Status.HELD)
            .select_related("change")
            .order_by("change__sequence", "id")
        )
        if not held:
            return None  # another evaluation summed them up first
        first, latest = held[0].change, held[-1].change
        changes = HealthChange.objects.filter(
            pair_id=pair_id, sequence__gte=first.sequence, sequence__lte=last.sequence
        ).count()
        reason = (
            f"changed state {changes} times between {_hhmm(first.at)} and {_hhmm(last.at)} "
            f"UTC ({len(held)} messages held); latest: {last.reason}"
        )
        summary, rest = held[-1], held[:-1]
        Notification.objects.filter(id__in=[n.id for n in rest]).update(
            status=Status.SUMMARISED, last_error=f"summed up in notification {summary.id}"
        )
        Notification.objects.filter(id=summary.id).update(
            kind=Notification.Kind.SUMMARY,
            status=Status.PENDING,
            state=last.to_state,
            reason=reason,
            attempts=0,
            last_error="",
            next_attempt_at=now,
        )
    logger.info(
        "pair %s, channel %s: %s held messages summed up (changes %s to %s)",
        pair_id,
        channel_id,
        len(held),
        first.sequence,
        latest.sequence,
    )
    return summary.id


def _hhmm(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M}"

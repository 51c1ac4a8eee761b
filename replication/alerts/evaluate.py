"""Evaluate pairs' health, record each change, and queue the messages it calls for.

Run by beat every minute and after every reconcile. Safe to run twice, or twice at once:

- evaluations of a pair are serial: each takes its pairs' rows FOR NO KEY UPDATE (in id
  order, so two evaluators cannot deadlock) and only then reads the clock and the facts, so
  the evaluator that records last also computed last; one that read the facts before a run
  finished can no longer record its stale state after the one that came after the run
  (ingest's inserts take KEY SHARE locks, which this does not block);
- a change is written as the pair's next ``sequence``; a second evaluator that read the same
  latest change fails the unique constraint and records nothing;
- the change's notifications are written in the same transaction as the change, so whoever
  wrote the change owns them, and a crash before they were queued leaves them pending for
  the sweep (``delivery.due_for_retry``) to queue;
- a reminder is one row per (change, channel, reminder number): only the evaluator that
  inserts it sends it.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from replication.alerts import rules
from replication.alerts.delivery import due_for_retry
from replication.models import AlertChannel, BucketPair, HealthChange, Notification
from replication.status.facts import PairHealth, pair_health
from replication.status.health import State

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    changes: list[int] = field(default_factory=list)  # HealthChange ids recorded
    notifications: list[int] = field(default_factory=list)  # new Notification ids
    retries: list[int] = field(default_factory=list)  # unfinished ones found by the sweep


def evaluate(pairs: QuerySet[BucketPair] | None = None, now: datetime | None = None) -> Evaluation:
    """Record changes and reminders for ``pairs`` (all by default); returns what was written.

    The caller queues ``notifications + retries`` once this has committed.
    """
    with transaction.atomic():
        pairs = pairs if pairs is not None else BucketPair.objects.all()
        locked = list(
            pairs.select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True)
        )
        return _evaluate_locked(BucketPair.objects.filter(pk__any=locked), now or timezone.now())


def _evaluate_locked(pairs: QuerySet[BucketPair], now: datetime) -> Evaluation:
    result = Evaluation()
    healths = pair_health(pairs, now)
    latest = latest_changes([h.pair.pk for h in healths])
    enabled = list(AlertChannel.objects.enabled().prefetch_related("pairs"))
    served = {c.pk: {p.pk for p in c.pairs.all()} for c in enabled}
    interval = timedelta(minutes=settings.ALERT_REMINDER_MINUTES)
    for entry in healths:
        previous = latest.get(entry.pair.pk)
        channels = [c for c in enabled if c.all_pairs or entry.pair.pk in served[c.pk]]
        if previous is None or previous.to_state != entry.health.state:
            change, notified = _record_change(entry, previous, channels, now)
            if change is not None:
                result.changes.append(change)
                result.notifications += notified
            continue
        number = rules.reminder_due(State(previous.to_state), previous.at, now, interval)
        if number:
            result.notifications += _remind(previous, number, entry, channels, now)
    result.retries = _sweep(now, exclude=set(result.notifications))
    return result


def latest_changes(pair_ids: list[int]) -> dict[int, HealthChange]:
    """Each pair's latest change, in one query served by the timeline index."""
    latest = HealthChange.objects.filter(pair=OuterRef("pair_id")).order_by("-sequence")
    rows = HealthChange.objects.filter(pair_id__any=pair_ids, id=Subquery(latest.values("id")[:1]))
    return {c.pair_id: c for c in rows}


def _record_change(
    entry: PairHealth,
    previous: HealthChange | None,
    channels: list[AlertChannel],
    now: datetime,
) -> tuple[int | None, list[int]]:
    health = entry.health
    from_state = State(previous.to_state) if previous else None
    kind = rules.message_for_change(from_state, health.state)
    try:
        with transaction.atomic():
            change = HealthChange.objects.create(
                pair=entry.pair,
                sequence=previous.sequence + 1 if previous else 1,
                from_state=from_state or "",
                to_state=health.state,
                reason=health.reason,
                reasons=list(health.reasons),
                at=now,
            )
            notifications = []
            if kind is not None:
                notifications = Notification.objects.bulk_create(
                    Notification(
                        change=change,
                        channel=channel,
                        kind=kind,
                        state=health.state,
                        reason=health.reason,
                        created_at=now,
                        next_attempt_at=now,
                    )
                    for channel in channels
                )
    except IntegrityError:
        # Another evaluator recorded this pair's next change first; it sends its messages.
        logger.info("pair %s: change already recorded by another evaluation", entry.pair.name)
        return None, []
    logger.info(
        "pair %s: %s -> %s (%s)", entry.pair.name, from_state or "new", health.state, health.reason
    )
    return change.id, [n.id for n in notifications]


def _remind(
    change: HealthChange,
    number: int,
    entry: PairHealth,
    channels: list[AlertChannel],
    now: datetime,
) -> list[int]:
    queued = set(
        Notification.objects.filter(change=change, sequence=number).values_list(
            "channel_id", flat=True
        )
    )
    created_ids = []
    for channel in channels:
        if channel.pk in queued:
            continue
        try:
            with transaction.atomic():
                notification = Notification.objects.create(
                    change=change,
                    channel=channel,
                    kind=Notification.Kind.REMINDER,
                    sequence=number,
                    state=entry.health.state,
                    reason=entry.health.reason,
                    created_at=now,
                    next_attempt_at=now,
                )
        except IntegrityError:
            continue  # this reminder is already queued for this channel
        created_ids.append(notification.id)
    return created_ids


def _sweep(now: datetime, exclude: set[int]) -> list[int]:
    return [i for i in due_for_retry(now) if i not in exclude]

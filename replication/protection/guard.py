"""The destructive-change guard's ORM side: evaluate the counts, hold, release, pause.

Each minute (beat) ``evaluate`` trips the guard of every enabled, unpaused pair whose last
five minutes say so (guard_rules.decide); hourly ``recompute_usual`` refreshes each pair's
usual count. A hold stays until a person releases it; every trip, release and pause is
audited (GuardAudit).
"""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from replication.models import (
    BucketPair,
    GuardAction,
    GuardAudit,
    GuardHold,
    GuardRelease,
    GuardTally,
    ReconcileRun,
)
from replication.protection import guard_rules
from replication.protection.counting import minute_of
from replication.reconcile.queue import start_reconcile


def window_counts(now: datetime, pair_ids=None) -> dict[int, tuple[int, int]]:
    """(changes, encrypted refusals) of the last five minutes, by pair (one query)."""
    since = minute_of(now) - (guard_rules.WINDOW - timedelta(minutes=1))
    rows = GuardTally.objects.filter(minute__gte=since)
    if pair_ids is not None:
        rows = rows.filter(pair_id__in=list(pair_ids))
    return {
        row["pair_id"]: (row["changes"] or 0, row["refusals"] or 0)
        for row in rows.values("pair_id")
        .annotate(changes=Sum("changes"), refusals=Sum("encrypted_refusals"))
        .order_by()
    }


def evaluate(now: datetime | None = None) -> list[GuardHold]:
    """Trip the guard of each pair whose last five minutes say so; returns the new holds."""
    now = now or timezone.now()
    counts = window_counts(now)
    if not counts:
        return []
    pairs = (
        BucketPair.objects.filter(pk__in=list(counts), enabled=True)
        .filter(Q(guard_paused_until__isnull=True) | Q(guard_paused_until__lte=now))
        .exclude(pk__in=GuardHold.objects.filter(released_at__isnull=True).values("pair_id"))
    )
    tripped = []
    for pair in pairs:
        changes, refusals = counts[pair.pk]
        trip = guard_rules.decide(
            changes,
            refusals,
            min_changes=pair.guard_min_changes,
            factor=pair.guard_factor,
            usual=pair.guard_usual,
        )
        if trip is None:
            continue
        try:
            with transaction.atomic():
                hold = GuardHold.objects.create(
                    pair=pair,
                    since=now,
                    reason=trip.reason,
                    changes=trip.changes,
                    encrypted_refusals=trip.encrypted_refusals,
                    usual=trip.usual,
                    threshold=trip.threshold,
                )
                GuardAudit.objects.create(
                    pair=pair, at=now, action=GuardAction.TRIPPED, note=trip.reason
                )
        except IntegrityError:
            continue  # another evaluator tripped it a moment ago (one open hold per pair)
        tripped.append(hold)
    return tripped


def recompute_usual(now: datetime | None = None) -> int:
    """Refresh every pair's usual 5-minute count from 14 days of tallies; returns pairs changed."""
    now = now or timezone.now()
    since = now - guard_rules.HISTORY
    minutes: dict[int, list] = {}
    rows = (
        GuardTally.objects.filter(minute__gte=since)
        .values_list("pair_id", "minute")
        .annotate(n=Sum("changes"))
        .order_by()
    )
    for pair_id, minute, n in rows:
        minutes.setdefault(pair_id, []).append((minute, n))
    changed = 0
    for pair_id, current in BucketPair.objects.values_list("pk", "guard_usual"):
        counts = guard_rules.five_minute_counts(minutes.get(pair_id, []))
        value = guard_rules.usual(counts.values())
        if value != current:
            changed += BucketPair.objects.filter(pk=pair_id).update(guard_usual=value)
    return changed


def open_holds(pair_ids=None):
    holds = GuardHold.objects.filter(released_at__isnull=True).select_related("pair")
    if pair_ids is not None:
        holds = holds.filter(pair_id__in=list(pair_ids))
    return holds.order_by("pair__name")


def release(pair: BucketPair, user, kind: str, now: datetime | None = None) -> GuardHold | None:
    """Release the pair's open hold ("apply" or "keep"); None if it had none.

    "apply" then reconciles with repair, which applies the source's state to the backup.
    """
    now = now or timezone.now()
    kind = GuardRelease(kind)
    with transaction.atomic():
        hold = (
            GuardHold.objects.select_for_update()
            .filter(pair=pair, released_at__isnull=True)
            .first()
        )
        if hold is None:
            return None
        hold.released_at, hold.released_by, hold.release = now, user, kind
        hold.save(update_fields=["released_at", "released_by", "release"])
        action = (
            GuardAction.RELEASED_APPLY if kind == GuardRelease.APPLY else GuardAction.RELEASED_KEEP
        )
        GuardAudit.objects.create(pair=pair, at=now, action=action, by=user, note=hold.reason)
    if kind == GuardRelease.APPLY:
        start_reconcile(pair, trigger=ReconcileRun.Trigger.MANUAL, requested_by=user, repair=True)
    return hold


def pause(pair: BucketPair, user, hours: int, now: datetime | None = None) -> datetime:
    """Pause the guard for a planned bulk change; returns until when."""
    if not 1 <= hours <= 24 * 7:
        raise ValueError("a pause lasts 1 to 168 hours")
    now = now or timezone.now()
    until = now + timedelta(hours=hours)
    with transaction.atomic():
        BucketPair.objects.filter(pk=pair.pk).update(guard_paused_until=until)
        GuardAudit.objects.create(
            pair=pair,
            at=now,
            action=GuardAction.PAUSED,
            by=user,
            note=f"paused for {hours} h, until {until:%Y-%m-%d %H:%M} UTC",
        )
    pair.guard_paused_until = until
    return until


def resume(pair: BucketPair, user, now: datetime | None = None) -> None:
    now = now or timezone.now()
    with transaction.atomic():
        BucketPair.objects.filter(pk=pair.pk).update(guard_paused_until=None)
        GuardAudit.objects.create(pair=pair, at=now, action=GuardAction.RESUMED, by=user)
    pair.guard_paused_until = None

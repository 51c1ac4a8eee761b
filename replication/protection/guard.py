"""The destructive-change guard's ORM side: evaluate the counts, hold, release, pause.

Each minute (beat) ``evaluate`` trips the guard of every enabled, unpaused pair whose last
five minutes say so (guard_rules.decide); hourly ``recompute_usual`` refreshes each pair's
usual count. A hold stays until a person releases it; every trip, release and pause is
audited (GuardAudit). Releasing with "keep" records each key whose held change was not
applied as kept (finding "kept", with the backup's ETag), which reconcile honours until the
source changes the key again.
"""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from replication import s3 as s3_clients
from replication.lambda_function import DELETE, action_for
from replication.models import (
    BucketPair,
    CopyEvent,
    GuardAction,
    GuardAudit,
    GuardHold,
    GuardRelease,
    GuardTally,
    ObjectState,
    ReconcileRun,
)
from replication.models.events import CopyStatus, Finding
from replication.protection import guard_rules
from replication.protection.counting import minute_of
from replication.reconcile.findings import upsert_findings
from replication.reconcile.queue import start_reconcile

# HEADs of the backup at a "keep" release, in parallel (a held burst names thousands of keys).
_HEAD_THREADS = 8
_ABSENT = frozenset({"404", "NoSuchKey", "NotFound"})


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
    "keep" records every key whose held change was not applied as kept, with the ETag the
    backup holds (read before the hold is lifted, while the Lambda still leaves the backup
    alone).
    """
    now = now or timezone.now()
    kind = GuardRelease(kind)
    changes: dict[str, str] = {}
    kept: dict[str, str] = {}
    unread = 0
    if kind == GuardRelease.KEEP:
        hold = GuardHold.objects.filter(pair=pair, released_at__isnull=True).first()
        if hold is not None:
            changes = held_changes(hold)
            kept, unread = backup_etags(pair, changes)
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
        note = hold.reason
        if kind == GuardRelease.KEEP:
            record_kept(pair, kept, now)
            deletes = sum(changes[key] == "delete" for key in kept)
            note += (
                f"; {len(kept):,} kept as the backup holds them ({deletes:,} deletes, "
                f"{len(kept) - deletes:,} overwrites not applied)"
            )
            if unread:
                note += f", {unread:,} could not be read from the backup (not recorded)"
        GuardAudit.objects.create(pair=pair, at=now, action=action, by=user, note=note)
    if kind == GuardRelease.APPLY:
        start_reconcile(pair, trigger=ReconcileRun.Trigger.MANUAL, requested_by=user, repair=True)
    return hold


def held_changes(hold: GuardHold) -> dict[str, str]:
    """The keys whose change the Lambda held since ``hold`` began, each with its newest held
    change's kind ("delete" or "overwrite")."""
    events = (
        CopyEvent.objects.filter(pair=hold.pair_id, status=CopyStatus.HELD)
        .filter(finished_at__gte=hold.since)
        .order_by("finished_at", "id")
        .values_list("key", "event_name")
    )
    return {
        key: "delete" if action_for(event_name) == DELETE else "overwrite"
        for key, event_name in events
    }


def backup_etags(pair: BucketPair, changes: dict[str, str]) -> tuple[dict[str, str], int]:
    """({source key: the backup's ETag}, how many could not be read) for the held keys the
    backup holds, by a HEAD of each. A key the backup does not hold has nothing to keep."""
    found: dict[str, str] = {}
    unread = 0
    if not changes:
        return found, unread
    client = s3_clients.client(pair.region)

    def head(key: str) -> tuple[str, str | None, bool]:
        try:
            response = client.head_object(Bucket=pair.backup_bucket, Key=pair.backup_key(key))
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            return key, None, code not in _ABSENT
        except (BotoCoreError, ValueError):
            # Unreachable, or a key outside the pair's prefix: nothing known to keep.
            return key, None, True
        return key, response["ETag"].strip('"'), False

    with ThreadPoolExecutor(max_workers=_HEAD_THREADS, thread_name_prefix="guard-keep") as pool:
        for key, etag, failed in pool.map(head, sorted(changes)):
            if etag:
                found[key] = etag
            unread += failed
    return found, unread


def record_kept(pair: BucketPair, etags: dict[str, str], now: datetime) -> None:
    """Record each key as kept with the backup's ETag: the finding "kept", through the one
    upsert that owns findings (a later run's finding replaces it)."""
    findings = [
        {
            "key": key,
            "finding": Finding.KEPT,
            "source_modified_at": None,
            "lacking_since": None,
            "kept_etag": etag,
            "kept_at": now,
        }
        for key, etag in sorted(etags.items())
    ]
    for start in range(0, len(findings), 500):
        upsert_findings(pair.pk, None, now, findings[start : start + 500])


# Kept and still current: no event for the key since it was kept.
STILL_KEPT = Q(finding=Finding.KEPT) & (
    Q(event_time__isnull=True) | Q(event_time__lte=F("finding_at"))
)


def kept_count(pair: BucketPair) -> int:
    """Keys the backup keeps as a "keep" release said, the source not having changed since."""
    return ObjectState.objects.filter(STILL_KEPT, pair=pair).count()


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

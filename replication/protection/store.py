"""The ORM side of protection: run a pair's checks, keep the results, acknowledge a policy."""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from replication import s3
from replication.models import (
    BucketPair,
    PolicyAcknowledgement,
    ProtectionCheck,
    ProtectionResult,
)
from replication.protection import posture, rules
from replication.protection.rules import Check


def acknowledged_policy(pair: BucketPair) -> str | None:
    """The policy last acknowledged for the pair's backup; None if none ever was."""
    return (
        PolicyAcknowledgement.objects.filter(pair=pair)
        .order_by("-acknowledged_at", "-id")
        .values_list("policy", flat=True)
        .first()
    )


def run_checks(pair: BucketPair, now: datetime | None = None, client=None) -> list[Check]:
    """Check the pair's buckets now and keep the results; returns them."""
    client = client or s3.client(pair.region)
    checks = posture.check_pair(pair, client, acknowledged_policy(pair))
    record(pair, checks, now or timezone.now())
    return checks


def record(pair: BucketPair, checks: Iterable[Check], now: datetime) -> list[ProtectionResult]:
    checks = list(checks)
    rows = [
        ProtectionResult(
            pair=pair,
            check_id=check.id.value,
            state=check.state.value,
            reason=check.reason,
            fix=check.fix,
            detail=check.detail,
            observed=check.observed,
            checked_at=now,
        )
        for check in checks
    ]
    with transaction.atomic():
        # Lock the pair: two runs of its checks at once would both clear, then both insert
        # a latest row, and the unique constraint would fail the second.
        BucketPair.objects.select_for_update().filter(pk=pair.pk).first()
        ProtectionResult.objects.filter(
            pair=pair, is_latest=True, check_id__in=[c.id.value for c in checks]
        ).update(is_latest=False)
        return ProtectionResult.objects.bulk_create(rows)


def latest(pair_ids: Iterable[int]) -> dict[int, list[ProtectionResult]]:
    """The latest result of each check, by pair, in the checks' order (one query)."""
    order = {value: i for i, value in enumerate(ProtectionCheck.values)}
    found: dict[int, list[ProtectionResult]] = defaultdict(list)
    for row in ProtectionResult.objects.filter(pair_id__in=list(pair_ids), is_latest=True):
        found[row.pair_id].append(row)
    for rows in found.values():
        rows.sort(key=lambda r: order[r.check_id])
    return dict(found)


def latest_states() -> dict[int, dict[str, str]]:
    """Every pair's checks' latest states, by pair id and check (one query, for /metrics)."""
    found: dict[int, dict[str, str]] = defaultdict(dict)
    rows = ProtectionResult.objects.filter(is_latest=True).values_list(
        "pair_id", "check_id", "state"
    )
    for pair_id, check_id, state in rows:
        found[pair_id][check_id] = state
    return dict(found)


def acknowledge_policy(pair: BucketPair, user, now: datetime | None = None) -> bool:
    """Acknowledge the backup policy the latest check read; False if it was never read."""
    now = now or timezone.now()
    row = ProtectionResult.objects.filter(
        pair=pair, check_id=ProtectionCheck.BACKUP_POLICY, is_latest=True
    ).first()
    if row is None or row.state == "unknown":
        return False
    PolicyAcknowledgement.objects.create(
        pair=pair, policy=row.observed, acknowledged_by=user, acknowledged_at=now
    )
    check = rules.policy(posture.pair_view(pair), row.observed, row.observed)
    record(pair, [check], now)
    return True

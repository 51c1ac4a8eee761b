"""Settling: objects a run found in flight, checked again once their grace has passed. I/O edge.

A young object that differs is "in flight": its copy may simply not have happened yet. Once
its grace has passed, it is HEADed on both sides and becomes in sync or missing (or
mismatched) in its object state, so nothing stays "in flight" for ever. A finished run's
counts and verdict never change: the run gains how its in-flight objects settled
(``settled_in_sync``, ``settled_missing``, ``settled_at``). Only stored rows can be settled;
objects beyond the cap on stored rows wait for the next reconcile, which lists them again.

Beat settles every pair's due rows each minute (replication.tasks.settle_in_flight), and a
run settles its pair's earlier runs before it lists, so a site without beat settles too.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from replication import s3 as s3_clients
from replication.models import BucketPair, Discrepancy, ObjectState, ReconcileRun
from replication.models.events import Finding
from replication.reconcile import checksums
from replication.reconcile.checksums import ObjectChecksum, from_head
from replication.reconcile.findings import upsert_findings
from replication.rows import update_rows

log = logging.getLogger(__name__)

Settled = Discrepancy.Settled
_BATCH = 500
# The findings a settlement establishes; "gone" and "unverified" establish nothing.
_FINDING = {
    Settled.IN_SYNC: Finding.IN_SYNC,
    Settled.MISSING: Finding.MISSING,
    Settled.MISMATCHED: Finding.MISMATCHED,
}


class _Unreadable(Exception):
    """A HEAD that neither found the object nor proved it absent (denied, throttled)."""


def runs_to_settle(pair_id: int | None = None, *, before: ReconcileRun | None = None):
    """Finished runs with in-flight objects not yet all settled, oldest first."""
    runs = ReconcileRun.objects.filter(
        status=ReconcileRun.Status.SUCCEEDED, in_flight__gt=0, settled_at__isnull=True
    )
    if pair_id is not None:
        runs = runs.filter(pair_id=pair_id)
    if before is not None:
        runs = runs.exclude(id=before.id).filter(created_at__lte=before.created_at)
    return runs.select_related("pair").order_by("finished_at", "id")


def settle_due(now: datetime | None = None, *, pair_id: int | None = None) -> dict[str, int]:
    """Settle the due rows of every run that has some; the counts settled, in all."""
    totals = {"in_sync": 0, "missing": 0}
    for run in runs_to_settle(pair_id):
        in_sync, missing = settle_run(run, now=now)
        totals["in_sync"] += in_sync
        totals["missing"] += missing
    return totals


def settle_earlier_runs(run: ReconcileRun) -> None:
    """Before ``run`` lists its pair: settle what the pair's earlier runs left in flight.
    Never fails the run: settling is retried by beat and by the next run."""
    try:
        for earlier in runs_to_settle(run.pair_id, before=run):
            settle_run(earlier)
    except Exception:
        log.exception("reconcile run %s: settling earlier runs failed", run.id)


def settle_run(run: ReconcileRun, *, now: datetime | None = None) -> tuple[int, int]:
    """HEAD both sides of ``run``'s stored in-flight rows whose grace has passed, and record
    how they settled: on each row, in each object's state, and as counts on the run.
    Returns (in sync, missing) settled now. Rows whose HEAD could not be read wait."""
    now = now or timezone.now()
    pair = run.pair
    due = Discrepancy.objects.filter(
        run=run,
        kind=Discrepancy.Kind.IN_FLIGHT,
        settled=Settled.NOT_YET,
        source_last_modified__lte=now - pair.grace_period,
    ).order_by("id")
    s3 = s3_clients.client(pair.region)
    in_sync = missing = 0
    after_id = 0
    threads = max(1, settings.RECONCILE_CHECKSUM_THREADS)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="settle") as pool:
        while True:
            rows = list(due.filter(id__gt=after_id)[:_BATCH])
            if not rows:
                break
            after_id = rows[-1].id
            results = list(pool.map(lambda row: _settle_one(s3, pair, row), rows))
            settled = [row for row, result in zip(rows, results, strict=True) if result]
            for row, result in zip(rows, results, strict=True):
                if result:
                    row.settled = result
            n_in_sync, n_missing = _record(run, pair, settled, now)
            in_sync += n_in_sync
            missing += n_missing
    _close_if_done(run, now)
    return in_sync, missing


def _settle_one(s3, pair: BucketPair, row: Discrepancy) -> str:
    """The row's settlement, or "" when a HEAD could not be read (it waits)."""
    try:
        source = _head(s3, pair.source_bucket, row.key)
        backup = _head(s3, pair.backup_bucket, pair.backup_key(row.key))
    except _Unreadable as exc:
        log.info("settling %s of run %s waits: %s", row.key, row.run_id, exc)
        return ""
    return checksums.settled_as(row.source_etag, source, backup)


def _head(s3, bucket: str, key: str) -> ObjectChecksum | None:
    try:
        return from_head(s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code")
        if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
            return None
        raise _Unreadable(f"s3://{bucket}/{key}: {exc}") from exc
    except BotoCoreError as exc:
        raise _Unreadable(f"s3://{bucket}/{key}: {exc}") from exc


def _record(
    run: ReconcileRun, pair: BucketPair, rows: list[Discrepancy], now: datetime
) -> tuple[int, int]:
    if not rows:
        return 0, 0
    in_sync = sum(row.settled == Settled.IN_SYNC for row in rows)
    missing = sum(row.settled in (Settled.MISSING, Settled.MISMATCHED) for row in rows)
    # An object found in sync gets a finding only where it has a state already (an open
    # problem to resolve); one found lacking always does.
    with_state = set(
        ObjectState.objects.filter(pair=pair, key__in=[row.key for row in rows]).values_list(
            "key", flat=True
        )
    )
    findings = {}
    for row in rows:
        finding = _FINDING.get(row.settled)
        if finding is None or (finding == Finding.IN_SYNC and row.key not in with_state):
            continue
        lacking = finding != Finding.IN_SYNC
        findings[row.key] = {
            "key": row.key,
            "finding": finding,
            "source_modified_at": row.source_last_modified,
            "lacking_since": now if lacking else None,
        }
    with transaction.atomic():
        update_rows(Discrepancy, rows, ["settled"])
        if findings:
            upsert_findings(pair.id, run.id, now, list(findings.values()))
        ReconcileRun.objects.filter(id=run.id).update(
            settled_in_sync=F("settled_in_sync") + in_sync,
            settled_missing=F("settled_missing") + missing,
        )
    return in_sync, missing


def _close_if_done(run: ReconcileRun, now: datetime) -> None:
    """The run is settled once none of its stored in-flight rows waits any more."""
    waiting = Discrepancy.objects.filter(
        run=run, kind=Discrepancy.Kind.IN_FLIGHT, settled=Settled.NOT_YET
    ).exists()
    if not waiting:
        ReconcileRun.objects.filter(id=run.id, settled_at__isnull=True).update(settled_at=now)

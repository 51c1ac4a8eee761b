"""Restore drills: restore a sample of a pair's backup to scratch, read it back, compare it
with the source, delete it. Orchestration + I/O.

The sample comes from one pass over the backup's listing (replication/restore/sample.py);
a candidate counts only when its source still holds the same content (HEAD: same ETag and
size), so a difference found means the backup, not a later write. Each sampled object is
restored by the restore's own copier, read back in full and hashed: its MD5 against the
source's ETag where that ETag is one, otherwise (or when that disagrees) its SHA-256 against
the source's bytes read in full.
"""

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from replication import s3 as s3_clients
from replication.buckets import split_location
from replication.lambda_function import describe_error
from replication.models import BucketPair, DrillObject, RestoreDrill
from replication.reconcile.diff import Entry
from replication.reconcile.listing import ListingError, Side, list_pages
from replication.restore.copier import copy_version
from replication.restore.plan import DRILL_PREFIX
from replication.restore.sample import Sampler, is_md5, pick

log = logging.getLogger(__name__)

Status = RestoreDrill.Status
_THREADS = 4
_READ_CHUNK = 1024 * 1024


class DrillRefused(Exception):
    """A drill that cannot start (one already running); one line saying why."""


def scratch_of(pair: BucketPair) -> tuple[str, str]:
    """Where the pair's drills restore to: its own scratch place, or the reserved prefix."""
    if pair.drill_scratch:
        return split_location(pair.drill_scratch)
    return pair.backup_bucket, DRILL_PREFIX


def start_drill(
    pair: BucketPair,
    trigger: str = RestoreDrill.Trigger.MANUAL,
    *,
    requested_by=None,
    requested_by_name: str = "",
) -> RestoreDrill:
    """The drill's row, which is also its audit record (who asked, when); DrillRefused when
    one of the pair is already running."""
    bucket, prefix = scratch_of(pair)
    try:
        with transaction.atomic():
            drill = RestoreDrill.objects.create(
                pair=pair,
                trigger=trigger,
                scratch="",
                requested_by=requested_by,
                requested_by_name=requested_by_name
                or (requested_by.get_username() if requested_by else ""),
            )
    except IntegrityError:
        raise DrillRefused(f"a restore drill of {pair.name} is already running") from None
    drill.scratch = f"{bucket}/{prefix}{drill.pk}/"
    drill.save(update_fields=["scratch"])
    log.info(
        "restore drill #%s of %s started (%s, by %s)",
        drill.pk,
        pair.name,
        trigger,
        drill.requested_by_name or "-",
    )
    return drill


def run_drill(drill_id: int, *, s3=None, lister=None, rng=None) -> RestoreDrill:
    """Carry out a started drill and record its outcome; never raises for S3's errors."""
    drill = RestoreDrill.objects.select_related("pair").get(id=drill_id)
    pair = drill.pair
    s3 = s3 or s3_clients.client(pair.region)
    lister = lister or s3_clients.listing_client(pair.region)
    started = time.monotonic()
    try:
        samples = _sample(s3, lister, drill, rng)
        if not samples:
            return _finish(drill, Status.ERROR, "nothing to drill: no object's source is unchanged")
        with ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="drill") as pool:
            rows = list(pool.map(lambda item: _drill_one(s3, drill, *item), samples))
    except ListingError as exc:
        return _finish(drill, Status.ERROR, str(exc))
    DrillObject.objects.bulk_create(rows)
    elapsed = time.monotonic() - started
    verified = [r for r in rows if r.outcome == DrillObject.Outcome.VERIFIED]
    differs = [r for r in rows if r.outcome == DrillObject.Outcome.DIFFERS]
    errors = [r for r in rows if r.outcome == DrillObject.Outcome.ERROR]
    total = sum(r.size for r in rows)
    drill.sampled, drill.verified, drill.sampled_bytes = len(rows), len(verified), total
    drill.duration_s = round(elapsed, 3)
    drill.throughput_bytes_s = round(total / elapsed, 1) if elapsed > 0 else None
    if differs:
        keys = ", ".join(repr(r.key) for r in differs[:3])
        return _finish(
            drill, Status.FAILED, f"{len(differs)} of {len(rows)} objects differ: {keys}"
        )
    if errors:
        return _finish(drill, Status.ERROR, f"{len(errors)} of {len(rows)}: {errors[0].error}")
    return _finish(drill, Status.PASSED, "")


def _finish(drill: RestoreDrill, status: str, error: str) -> RestoreDrill:
    drill.status, drill.error, drill.finished_at = status, error, timezone.now()
    drill.save()
    log.info("restore drill #%s of %s: %s %s", drill.pk, drill.pair.name, status, error)
    return drill


def _sample(s3, lister, drill: RestoreDrill, rng) -> list[tuple[Entry, bool]]:
    pair = drill.pair
    scratch_key_bytes = len(drill.scratch.partition("/")[2].encode())
    sampler = Sampler(
        size=settings.DRILL_SAMPLE_SIZE,
        max_bytes=pair.drill_max_bytes,
        max_key_bytes=1024 - scratch_key_bytes,
        **({"rng": rng} if rng is not None else {}),
    )
    for page in list_pages(lister, Side("backup", pair.backup_bucket, pair.backup_prefix)):
        sampler.see_all(page)

    def unchanged(entry: Entry) -> bool:
        try:
            head = s3.head_object(Bucket=pair.source_bucket, Key=pair.source_prefix + entry.key)
        except (ClientError, BotoCoreError):
            return False  # gone or unreadable: not a fair test of the backup
        return head["ETag"].strip('"') == entry.etag and head["ContentLength"] == entry.size

    chosen, largest = pick(sampler, unchanged)
    return [(e, False) for e in chosen] + ([(largest, True)] if largest else [])


def _drill_one(s3, drill: RestoreDrill, entry: Entry, multipart: bool) -> DrillObject:
    pair = drill.pair
    bucket, _, prefix = drill.scratch.partition("/")
    source_key = pair.source_prefix + entry.key
    scratch_key = prefix + entry.key
    row = DrillObject(drill=drill, key=source_key, size=entry.size, multipart=multipart)
    started = time.monotonic()
    restored = copy_version(
        s3,
        pair.backup_bucket,
        pair.backup_prefix + entry.key,
        None,
        entry.etag,
        bucket,
        scratch_key,
    )
    if not restored.ok:
        row.outcome, row.error = DrillObject.Outcome.ERROR, restored.error
        row.duration_s = time.monotonic() - started
        return row
    try:
        md5, sha256, version_id = _read(s3, bucket, scratch_key)
        row.duration_s = time.monotonic() - started  # the restore and its reading back
        if is_md5(entry.etag) and md5 == entry.etag:
            row.outcome, row.compared_by = DrillObject.Outcome.VERIFIED, "md5"
        else:
            _, source_sha256, _ = _read(s3, pair.source_bucket, source_key)
            same = source_sha256 == sha256
            row.compared_by = "sha256"
            row.outcome = DrillObject.Outcome.VERIFIED if same else DrillObject.Outcome.DIFFERS
            if not same:
                row.error = "the restored bytes differ from the source's (SHA-256)"
        _delete(s3, bucket, scratch_key, version_id)
    except (ClientError, BotoCoreError) as exc:
        row.outcome, row.error = DrillObject.Outcome.ERROR, describe_error(exc)[1]
        row.duration_s = row.duration_s or time.monotonic() - started
    return row


def _read(s3, bucket: str, key: str) -> tuple[str, str, str | None]:
    """The object's MD5 and SHA-256 (hex), read in full, and the version read."""
    response = s3.get_object(Bucket=bucket, Key=key)
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    for chunk in response["Body"].iter_chunks(_READ_CHUNK):
        md5.update(chunk)
        sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest(), response.get("VersionId")


def _delete(s3, bucket: str, key: str, version_id: str | None) -> None:
    # The version itself, not a delete marker over it: a versioned bucket would keep the bytes.
    extra = {"VersionId": version_id} if version_id and version_id != "null" else {}
    s3.delete_object(Bucket=bucket, Key=key, **extra)


def due_pairs(now: datetime | None = None) -> list[BucketPair]:
    """Enabled pairs with drills on whose last drill started more than their interval ago."""
    now = now or timezone.now()
    due = []
    for pair in BucketPair.objects.filter(enabled=True, restore_drill_every_days__gt=0):
        last = pair.restore_drills.order_by("-started_at").values_list("started_at", flat=True)
        started = last.first()
        if started is None or now - started >= timedelta(days=pair.restore_drill_every_days):
            due.append(pair)
    return due


# A drill reads at most a sample and one object of drill_max_bytes: one still running after
# this long lost its worker, and would keep the pair's next drill from starting.
STALLED_AFTER = timedelta(hours=6)


def reap_stalled_drills(now: datetime | None = None) -> list[int]:
    """End drills whose worker died as ``error``, with the reason; their ids."""
    now = now or timezone.now()
    stalled = list(
        RestoreDrill.objects.filter(
            status=Status.RUNNING, started_at__lt=now - STALLED_AFTER
        ).values_list("id", flat=True)
    )
    RestoreDrill.objects.filter(id__in=stalled, status=Status.RUNNING).update(
        status=Status.ERROR,
        error="its worker stopped before the drill finished",
        finished_at=now,
    )
    return stalled

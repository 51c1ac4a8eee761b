"""A restore's own writes into the source, recognised by key and ETag. ORM and SQL.

A restore into the source writes each key with the ETag of the backup version it brings
back; the Lambda then copies that object into the backup, which by ETag is an overwrite of
the damage. It is the recovery, not a destructive change: the guard neither counts it
(ingest, replication/protection/counting.py) nor holds it (the Lambda asks
``POST /api/v1/pairs/<name>/restored`` when such a restore and a hold meet).

Recognised: a key with the ETag an into-source restore of the pair set out to write it with
(its outcome row pending or restored: a copy's outcome is saved a few seconds after the copy),
or with the ETag its copy wrote when that is another (``written_etag``: a source that
encrypts with KMS gives each object it stores an ETag of its own; saved as soon as the copy
returns), seen from the job's creation until LATE_COPIES after its end. The same key with
other content is not: that is a change like any other.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from replication.models import RestoredObject, RestoreJob

# How long after a restore into the source ends the Lambda's copies of its writes may still
# come: S3 sends events within seconds; retries and a backlogged queue stretch that.
LATE_COPIES = timedelta(hours=1)
_WRITTEN = (RestoredObject.Outcome.PENDING, RestoredObject.Outcome.RESTORED)

Window = tuple[datetime, datetime | None]  # a job's creation, its end (None: still running)


def unquoted(etag: str | None) -> str:
    return (etag or "").strip('"')


def written(pair_id: int, keys: Iterable[str]) -> dict[tuple[str, str], list[Window]]:
    """{(key, ETag): the windows of the into-source restores of the pair that wrote it} for
    ``keys`` (one query)."""
    keys = list(keys)
    rows = (
        RestoredObject.objects.filter(job__pair_id=pair_id, job__into_source=True, key__in=keys)
        .filter(Q(outcome__in=_WRITTEN) | ~Q(written_etag=""))
        .values_list(
            "key", "etag", "written_etag", "outcome", "job__created_at", "job__finished_at"
        )
    )
    found: dict[tuple[str, str], list[Window]] = {}
    for key, etag, written_etag, outcome, created_at, finished_at in rows:
        window = (created_at, finished_at)
        if outcome in _WRITTEN:
            found.setdefault((key, unquoted(etag)), []).append(window)
        if written_etag:
            found.setdefault((key, unquoted(written_etag)), []).append(window)
    return found


def within(windows: Iterable[Window], when: datetime) -> bool:
    """Whether ``when`` falls in one of a key's restore windows (pure)."""
    return any(
        start <= when and (end is None or when <= end + LATE_COPIES) for start, end in windows
    )


def recognise(pair_id: int, objects: Iterable[tuple[str, str]], when: datetime) -> set:
    """The (key, ETag) among ``objects`` that a restore into the pair's source wrote, as of
    ``when``."""
    objects = {(key, unquoted(etag)) for key, etag in objects}
    windows = written(pair_id, {key for key, _ in objects})
    return {obj for obj in objects if within(windows.get(obj, ()), when)}


def restoring(pair_ids: Iterable[int], now: datetime) -> set[int]:
    """The pairs among ``pair_ids`` whose source a restore is writing, or wrote recently
    enough that the Lambda's copies of it may still come (one query)."""
    jobs = RestoreJob.objects.filter(pair_id__in=list(pair_ids), into_source=True).filter(
        Q(status__in=RestoreJob.ACTIVE) | Q(finished_at__gte=now - LATE_COPIES)
    )
    return set(jobs.values_list("pair_id", flat=True).distinct())


def written_sql(event: str) -> str:
    """PostgreSQL: true when the row ``event`` (with pair_id, key, etag, finished_at) is a
    restore's own write, as ``recognise`` says. Used by the guard's counting statement."""
    q = connection.ops.quote_name
    objects = q(RestoredObject._meta.db_table)
    jobs = q(RestoreJob._meta.db_table)
    written = ", ".join(f"'{outcome}'" for outcome in _WRITTEN)
    late = int(LATE_COPIES.total_seconds())
    # Per job of the pair, the (job, key) unique index finds the row.
    return (
        f"EXISTS (SELECT 1 FROM {objects} r JOIN {jobs} j ON j.id = r.job_id "  # noqa: S608
        f"WHERE j.pair_id = {event}.pair_id AND j.into_source "
        f"AND j.created_at <= {event}.finished_at "
        f"AND (j.finished_at IS NULL OR {event}.finished_at <= j.finished_at "
        f"+ interval '{late} seconds') "
        f"AND r.key = {event}.key AND ((r.etag = btrim({event}.etag, '\"') "
        f"AND r.outcome IN ({written})) OR r.written_etag = btrim({event}.etag, '\"')))"
    )

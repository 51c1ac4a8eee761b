"""Restore jobs: check a request, plan it, and carry it out resumably. Orchestration + ORM.

A job streams the plan (replication/restore/plan.py) once more when it runs and writes it
down, one ``pending`` outcome row per object, before the first copy: the listing is done
before the copies start, as a plain copying loop's is, and the memory holds one chunk of the
plan at a time. Then it copies in parallel, the rows in order; before a chunk of copies
starts, the job records how far its copies may have gone (``copying_through``), and each
copy's outcome replaces ``pending``. An attempt that takes over from a dead worker skips
every row already restored or failed, and checks the pending rows its predecessors may have
copied with a HEAD of the target (restored: recorded, not copied again).

A person may cancel a job: the worker sees it at its next report (each chunk, and every few
seconds), lets the copies under way finish, records their outcomes, drops the rows never
copied and stops.
"""

import logging
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from replication import s3 as s3_clients
from replication.buckets import bucket_name_problem
from replication.models import BucketPair, RestoredObject, RestoreJob
from replication.reconcile.listing import ListingError, Side
from replication.restore import guard
from replication.restore.copier import copy_version, target_holds
from replication.restore.listing import bucket_problem, list_versions, versioning_enabled
from replication.restore.plan import (
    Choice,
    Target,
    Totals,
    counted,
    empty_plan_problem,
    plan,
    target_problem,
    time_problem,
)
from replication.rows import update_rows

log = logging.getLogger(__name__)

Status = RestoreJob.Status
Outcome = RestoredObject.Outcome
_CHUNK = 200  # rows submitted and settled together
_SPOOL = 1000  # plan rows written together
# Copy errors that say the target (or the backup) refuses us: the first one, before anything
# was restored, stops the job instead of failing every object the same way.
_REFUSED = {"AccessDenied", "AllAccessDisabled", "NoSuchBucket", "InvalidAccessKeyId"}


class RestoreRefused(Exception):
    """A request that must not run; the message is one line saying why."""


class Superseded(Exception):
    """Another attempt took the job over: this one stops without writing more."""


class Cancelled(Exception):
    """A person cancelled the job: this attempt records what it copied and stops."""


@dataclass(frozen=True)
class Request:
    """What a person asked to restore: the pair's keys under ``prefix`` (as the source names
    them) as they were at ``at``, into ``target``."""

    pair: BucketPair
    at: datetime
    prefix: str
    target: Target
    into_source: bool = False

    @property
    def relative_prefix(self) -> str:
        return self.prefix[len(self.pair.source_prefix) :]

    def backup_side(self) -> Side:
        pair = self.pair
        return Side("backup", pair.backup_bucket, pair.backup_prefix + self.relative_prefix)


def make_request(
    pair: BucketPair, *, at: datetime, prefix: str = "", to: str = "", into_source: bool = False
) -> Request:
    """A request from what a person typed; RestoreRefused for a missing or doubled target,
    a prefix outside the pair, or a target inside the pair's prefixes."""
    if into_source and to:
        raise RestoreRefused("name one target: --to or --into-source, not both")
    if not into_source and not to.strip():
        raise RestoreRefused(
            "no target named: --to BUCKET[/PREFIX], or --into-source to write back into the source"
        )
    if prefix and not prefix.startswith(pair.source_prefix):
        raise RestoreRefused(
            f"the prefix {prefix!r} is outside the pair's source prefix {pair.source_prefix!r} "
            "(give it as the source names keys)"
        )
    source = Target(pair.source_bucket, pair.source_prefix)
    target = source if into_source else _parse_target(to)
    backup = Target(pair.backup_bucket, pair.backup_prefix)
    problem = target_problem(target, source=source, backup=backup, into_source=into_source)
    if problem:
        raise RestoreRefused(problem)
    return Request(pair, at, prefix or pair.source_prefix, target, into_source)


def _parse_target(text: str) -> Target:
    text = text.strip()
    if text.startswith("s3://"):
        text = text[len("s3://") :]
    bucket, _, prefix = text.partition("/")
    problem = bucket_name_problem(bucket)
    if problem:
        raise RestoreRefused(f"the target {bucket!r} is not a bucket name: it {problem}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # a folder, as a pair's prefixes are
    return Target(bucket, prefix)


def check(s3, request: Request, now: datetime) -> None:
    """The checks S3 must answer before anything is planned: RestoreRefused saying why."""
    try:
        versioned = versioning_enabled(s3, request.pair.backup_bucket)
    except ListingError as exc:
        raise RestoreRefused(str(exc)) from None
    problem = time_problem(request.at, now, versioned=versioned) or bucket_problem(
        s3, request.target.bucket
    )
    if problem:
        raise RestoreRefused(problem)


def choices(lister, request: Request, totals: Totals | None = None) -> Iterator[Choice]:
    """The plan, key by key, from one pass over the backup's versions (``lister``: a client
    from ``replication.s3.listing_client``, parsed lean, or any other)."""
    versions = list_versions(lister, request.backup_side(), strip=len(request.pair.backup_prefix))
    if totals is not None:
        versions = counted(versions, totals)
    for choice in plan(versions, request.at):
        if totals is not None:
            totals.add(choice)
        yield choice


def count_plan(lister, request: Request, on_key: Callable[[], None] | None = None) -> Totals:
    """The whole plan's figures (one listing); RestoreRefused when it restores nothing."""
    totals = Totals()
    try:
        for _ in choices(lister, request, totals):
            if on_key:
                on_key()
    except ListingError as exc:
        raise RestoreRefused(str(exc)) from None
    problem = empty_plan_problem(totals, request.at, request.prefix)
    if problem:
        raise RestoreRefused(problem)
    return totals


def create_job(
    request: Request,
    totals: Totals,
    *,
    via: str = RestoreJob.Via.COMMAND,
    requested_by=None,
    requested_by_name: str = "",
) -> RestoreJob:
    """The job's row, which is also its audit record; RestoreRefused when the target
    already has a restore running."""
    try:
        with transaction.atomic():
            job = RestoreJob.objects.create(
                pair=request.pair,
                via=via,
                requested_by=requested_by,
                requested_by_name=requested_by_name
                or (requested_by.get_username() if requested_by else ""),
                at=request.at,
                prefix=request.prefix,
                target_bucket=request.target.bucket,
                target_prefix=request.target.prefix,
                into_source=request.into_source,
                planned_objects=totals.objects,
                planned_bytes=totals.bytes,
                skipped=totals.deleted,
                absent=totals.absent,
            )
    except IntegrityError:
        active = RestoreJob.objects.filter(
            target_bucket=request.target.bucket, status__in=RestoreJob.ACTIVE
        ).first()
        which = f" (restore #{active.pk}, {active.status})" if active else ""
        raise RestoreRefused(
            f"a restore into {request.target.bucket!r} is already running{which}; "
            "wait for it to finish"
        ) from None
    if request.into_source:
        guard.release_for_restore(job)
    log.info(
        "restore #%s of %s requested by %s: %r as at %s into %s (%s objects, %s bytes)",
        job.pk,
        request.pair.name,
        job.requested_by_name or "?",
        request.prefix,
        request.at.isoformat(),
        request.target.location,
        totals.objects,
        totals.bytes,
    )
    return job


def request_of(job: RestoreJob) -> Request:
    return Request(
        job.pair,
        job.at,
        job.prefix,
        Target(job.target_bucket, job.target_prefix),
        job.into_source,
    )


def claim_job(job_id: int, now: datetime | None = None) -> RestoreJob | None:
    """Take the job for this attempt: a queued one, or a running one whose worker went
    silent for the heartbeat timeout. None when it is finished or alive elsewhere."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    with transaction.atomic():
        job = (
            RestoreJob.objects.select_for_update()
            .filter(id=job_id)
            .filter(Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=stale))
            .first()
        )
        if job is None:
            return None
        job.status = Status.RUNNING
        job.attempt += 1
        job.heartbeat_at = now
        job.started_at = job.started_at or now
        job.save(update_fields=["status", "attempt", "heartbeat_at", "started_at"])
    return job


def seconds_until_stale(job_id: int, now: datetime | None = None) -> float | None:
    """How long until a running job's attempt would be taken for dead; None when the job is
    not running (finished, cancelled, or never taken)."""
    heartbeat = (
        RestoreJob.objects.filter(id=job_id, status=Status.RUNNING)
        .values_list("heartbeat_at", flat=True)
        .first()
    )
    if heartbeat is None:
        return None
    stale_at = heartbeat + timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    return max(0.0, (stale_at - (now or timezone.now())).total_seconds())


def run_job(
    job_id: int,
    *,
    s3=None,
    lister=None,
    threads: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RestoreJob | None:
    """Claim the job and carry it out; the job as it ended, or None when not claimed."""
    job = claim_job(job_id)
    if job is None:
        return None
    s3 = s3 or s3_clients.client(job.pair.region)
    lister = lister or s3_clients.listing_client(job.pair.region)
    try:
        _copy_all(job, s3, lister, threads or settings.RESTORE_THREADS, on_progress)
    except Superseded:
        log.warning("restore #%s: another attempt took it over; this one stops", job_id)
        return RestoreJob.objects.get(id=job_id)
    except Cancelled:
        log.info("restore #%s: cancelled; this attempt stopped", job_id)
        return count_cancelled(job)
    except (RestoreRefused, ListingError) as exc:
        return finish_job(job, error=str(exc))
    return finish_job(job)


def fail_job(job_id: int, reason: str) -> None:
    RestoreJob.objects.filter(id=job_id, status__in=RestoreJob.ACTIVE).update(
        status=Status.FAILED, error=reason, finished_at=timezone.now()
    )


def finish_job(job: RestoreJob, *, error: str = "") -> RestoreJob:
    """Count the outcomes and end the job: succeeded only when every object was restored."""
    tally = {
        row["outcome"]: row
        for row in job.outcomes.values("outcome").annotate(n=Count("id"), size=Sum("size"))
    }
    restored = tally.get(Outcome.RESTORED, {}).get("n", 0)
    failed = tally.get(Outcome.FAILED, {}).get("n", 0) + tally.get(Outcome.PENDING, {}).get("n", 0)
    if not error and failed:
        error = f"{failed:,} of {job.planned_objects:,} objects could not be restored"
    updated = RestoreJob.objects.filter(
        id=job.id, attempt=job.attempt, status=Status.RUNNING
    ).update(
        status=Status.FAILED if error else Status.SUCCEEDED,
        error=error,
        restored=restored,
        failed=failed,
        bytes_restored=tally.get(Outcome.RESTORED, {}).get("size") or 0,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    if not updated:
        if RestoreJob.objects.filter(id=job.id, status=Status.CANCELLED).exists():
            return count_cancelled(job)  # cancelled after its last copy: it stays cancelled
        log.warning("restore #%s: superseded before it could finish", job.id)
    job.refresh_from_db()
    return job


def cancel_job(job_id: int, *, by=None, by_name: str = "") -> bool:
    """Cancel a queued or running job (audited: who and when, kept on the job). Its target is
    free at once; its worker stops at its next report. False when it had already ended."""
    now = timezone.now()
    name = by_name or (by.get_username() if by else "")
    cancelled = RestoreJob.objects.filter(id=job_id, status__in=RestoreJob.ACTIVE).update(
        status=Status.CANCELLED,
        cancelled_at=now,
        cancelled_by=by,
        cancelled_by_name=name[:150],
        finished_at=now,
    )
    if cancelled:
        log.info("restore #%s cancelled by %s", job_id, name or "?")
    return bool(cancelled)


def count_cancelled(job: RestoreJob) -> RestoreJob:
    """A cancelled job's figures, counted from its outcome rows once its worker stopped."""
    tally = {
        row["outcome"]: row
        for row in job.outcomes.values("outcome").annotate(n=Count("id"), size=Sum("size"))
    }
    RestoreJob.objects.filter(id=job.id, status=Status.CANCELLED).update(
        restored=tally.get(Outcome.RESTORED, {}).get("n", 0),
        failed=tally.get(Outcome.FAILED, {}).get("n", 0),
        bytes_restored=tally.get(Outcome.RESTORED, {}).get("size") or 0,
    )
    job.refresh_from_db()
    return job


def _copy_all(job: RestoreJob, s3, lister, threads: int, on_progress) -> None:
    request = request_of(job)
    progress = _Progress(job, on_progress)
    # Rows up to the mark may have been copied by an earlier attempt: checked before copying.
    # A mark means the plan was written down whole before the first copy.
    resume_mark = job.copying_through
    in_flight: dict[Future, RestoredObject] = {}
    done: queue.SimpleQueue[Future] = queue.SimpleQueue()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="restore") as pool:
        try:
            if not resume_mark:
                _write_plan(job, request, lister, progress)
            for chunk in _rows_to_copy(job):
                progress.mark(chunk[-1].pk)
                for row in chunk:
                    future = pool.submit(_restore_one, s3, row, row.pk <= resume_mark, request)
                    in_flight[future] = row
                    future.add_done_callback(done.put)
                while len(in_flight) >= 2 * _CHUNK:
                    _collect(in_flight, done, progress)
            while in_flight:
                _collect(in_flight, done, progress)
        except Cancelled:
            _stop_cancelled(job, in_flight, progress)
            raise
        except BaseException:
            for future in in_flight:
                future.cancel()
            with suppress(Superseded, Cancelled):
                progress.flush()
            raise
    progress.flush()


def _write_plan(job: RestoreJob, request: Request, lister, progress: "_Progress") -> None:
    """The plan as pending rows, a chunk at a time; an attempt taking over from one that died
    while writing it writes it again, keeping the rows already there."""
    prefix, target = job.pair.source_prefix, request.target.prefix
    rows = (
        RestoredObject(
            job=job,
            key=prefix + choice.key,
            version_id=choice.version.version_id,
            size=choice.version.size,
            etag=choice.version.etag,
            target_key=target + choice.key,
        )
        for choice in _restorable(choices(lister, request), progress)
    )
    for chunk in _chunks(rows, _SPOOL):
        RestoredObject.objects.bulk_create(chunk, ignore_conflicts=True)
        progress.tick()


def _rows_to_copy(job: RestoreJob) -> Iterator[list[RestoredObject]]:
    """The job's pending rows in id order, a chunk at a time (by id, through the job's own
    index: settled rows are skipped here, not searched for)."""
    after = 0
    while True:
        rows = list(job.outcomes.filter(id__gt=after).order_by("id")[:_CHUNK])
        if not rows:
            return
        after = rows[-1].pk
        pending = [row for row in rows if row.outcome == Outcome.PENDING]
        if pending:
            yield pending


def _restorable(planned: Iterable[Choice], progress: "_Progress") -> Iterator[Choice]:
    # A stretch of keys deleted at the time copies nothing: the heartbeat must go on.
    for n, choice in enumerate(planned):
        if n % 1000 == 999:
            progress.tick()
        if choice.version is not None:
            yield choice


def _collect(in_flight: dict, done: queue.SimpleQueue, progress: "_Progress") -> None:
    """Settle the copies that have ended (waiting a few seconds at most for one)."""
    ended = []
    try:  # none may end in time (a large object's copy): the job reports all the same
        ended.append(done.get(timeout=settings.RECONCILE_PROGRESS_SECONDS))
        while True:
            ended.append(done.get_nowait())
    except queue.Empty:
        pass
    for future in ended:
        del in_flight[future]
        progress.add(future.result())
    progress.tick()


def _stop_cancelled(job: RestoreJob, in_flight: dict, progress: "_Progress") -> None:
    """Let the copies under way end and record them; drop the rows no attempt started."""
    never_started = [row.pk for future, row in in_flight.items() if future.cancel()]
    ended = [future.result() for future in in_flight if not future.cancelled()]
    progress.save_rows(progress.rows + ended)
    progress.rows = []
    job.refresh_from_db(fields=["copying_through"])
    pending = job.outcomes.filter(outcome=Outcome.PENDING)
    pending.filter(Q(id__in=never_started) | Q(id__gt=job.copying_through)).delete()


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _restore_one(s3, row: RestoredObject, check_first: bool, request: Request) -> RestoredObject:
    bucket = request.pair.backup_bucket
    if check_first and target_holds(s3, request.target.bucket, row.target_key, row.etag):
        row.outcome, row.verified_by = Outcome.RESTORED, "head"
    else:
        result = copy_version(
            s3,
            bucket,
            request.pair.backup_prefix + row.key[len(request.pair.source_prefix) :],
            row.version_id,
            row.etag,
            request.target.bucket,
            row.target_key,
        )
        row.outcome = Outcome.RESTORED if result.ok else Outcome.FAILED
        # Written even when unproven: the object is there, with the ETag S3 gave it.
        row.written_etag = result.etag if result.etag and result.etag != row.etag else ""
        row.verified_by = result.verified_by
        row.error_code = result.error_code
        row.error = result.error
    row.finished_at = timezone.now()
    return row


class _Progress:
    """Settled rows saved in batches, with the job's counts and heartbeat, every few seconds."""

    def __init__(self, job: RestoreJob, on_progress):
        self.job = job
        self.on_progress = on_progress
        self.rows: list[RestoredObject] = []
        self.saved_at = time.monotonic()
        self.restored_any = False

    def add(self, row: RestoredObject) -> None:
        if row.written_etag:
            # Saved now, not with the next batch: the Lambda's report of the write comes
            # within a second or two, and the guard must know its ETag by then.
            update_rows(RestoredObject, [row], ["written_etag"])
        if row.outcome == Outcome.RESTORED:
            self.restored_any = True
        elif not self.restored_any and row.error_code in _REFUSED:
            self.flush()
            raise RestoreRefused(
                f"nothing restored: {row.error} (copying {row.key!r} into "
                f"{self.job.target_location})"
            )
        self.rows.append(row)
        if self.on_progress:
            self.on_progress(1)
        if len(self.rows) >= _CHUNK:
            self.flush()

    def tick(self) -> None:
        if time.monotonic() - self.saved_at >= settings.RECONCILE_PROGRESS_SECONDS:
            self.flush()

    def mark(self, through_id: int) -> None:
        """Record that copies up to row ``through_id`` may start (a report like the others)."""
        self._report(copying_through=through_id)

    def flush(self) -> None:
        # The rows stay in hand until saved: a cancelled attempt still records them.
        restored = [r for r in self.rows if r.outcome == Outcome.RESTORED]
        with transaction.atomic():
            self._report(
                restored=F("restored") + len(restored),
                failed=F("failed") + len(self.rows) - len(restored),
                bytes_restored=F("bytes_restored") + sum(r.size for r in restored),
            )
            self.save_rows(self.rows)
        self.rows = []
        self.saved_at = time.monotonic()

    def save_rows(self, rows: list[RestoredObject]) -> None:
        save_outcomes(rows)

    def _report(self, **changes) -> None:
        """Update the job with its heartbeat; Cancelled or Superseded when it is no longer
        this attempt's to update."""
        job = self.job
        updated = RestoreJob.objects.filter(
            id=job.id, attempt=job.attempt, status=Status.RUNNING
        ).update(heartbeat_at=timezone.now(), **changes)
        if not updated:
            if RestoreJob.objects.filter(id=job.id, status=Status.CANCELLED).exists():
                raise Cancelled
            raise Superseded


_OUTCOME_FIELDS = ("outcome", "written_etag", "verified_by", "error_code", "error", "finished_at")


def save_outcomes(rows: list[RestoredObject]) -> None:
    """Write the rows' outcomes (replication/rows.py: not ``bulk_update``, whose CASE per row
    and field cost the job more CPU than all its copies)."""
    update_rows(RestoredObject, rows, _OUTCOME_FIELDS)


def reap_stalled_jobs(now: datetime | None = None) -> list[int]:
    """Jobs to queue again: running ones whose worker went silent (below the attempt limit;
    beyond it they are failed with the reason), and queued ones no worker took in time."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    again = []
    for job in RestoreJob.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale):
        if job.attempt >= settings.RESTORE_MAX_ATTEMPTS:
            fail_job(
                job.id,
                f"its worker stopped reporting {job.attempt} times; the objects restored so far "
                "are recorded",
            )
        else:
            again.append(job.id)
    queued_stale = now - timedelta(seconds=settings.RECONCILE_QUEUED_TIMEOUT)
    for job_id in RestoreJob.objects.filter(
        status=Status.QUEUED, created_at__lt=queued_stale
    ).values_list("id", flat=True):
        fail_job(job_id, "no worker took the restore in time; nothing was copied")
    return again

"""Running a reconcile: ask for a run, claim it, reconcile each key range, combine, record.

Every state change is a conditional update on the row (``filter(status=...).update(...)``),
so a task delivered twice, a worker that died, and the reaper can never make a run count
twice or come back to life. Celery is not imported here: replication/tasks.py decides
whether the ranges run inline or as a chord of tasks on several workers.
"""

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from operator import attrgetter

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from replication import s3 as s3_clients
from replication.models import BucketPair, Discrepancy, ReconcileRange, ReconcileRun
from replication.reconcile.diff import IN_SYNC, KEPT, Entry, ListingOrderError, Tally, diff
from replication.reconcile.findings import FindingWriter
from replication.reconcile.heartbeat import (
    Heartbeat,
    ProgressCallback,
    RangeSuperseded,
    RunAbandoned,
    keep_run_alive,
)
from replication.reconcile.listing import ListingError, ParallelListing, Side, probe_keys
from replication.reconcile.locks import retrying_deadlocks
from replication.reconcile.ranges import (
    BoundarySampler,
    KeyRange,
    first_run_cuts,
    split,
    too_small_to_split,
)
from replication.reconcile.reaper import fail_run, reap_stalled_runs
from replication.reconcile.repair import Repaired, delete_extras, repairing
from replication.reconcile.settle import settle_earlier_runs
from replication.reconcile.verdict import verdict
from replication.reconcile.verify import second_opinion
from replication.reconcile.writer import DiscrepancyWriter
from replication.rows import update_rows

log = logging.getLogger(__name__)

Status = ReconcileRun.Status
RangeStatus = ReconcileRange.Status


# --- Asking for a run -------------------------------------------------------------------------


def request_run(
    pair: BucketPair,
    *,
    trigger: str = ReconcileRun.Trigger.MANUAL,
    requested_by=None,
    repair: bool = False,
    _retries: int = 3,
) -> tuple[ReconcileRun, bool]:
    """A new queued run for ``pair``, or the one already queued or running: ``(run, created)``.

    A stalled active run (its worker gone) is reaped here first, so it never blocks the pair.
    """
    if trigger not in ReconcileRun.Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}: one of {ReconcileRun.Trigger.values}")
    now = timezone.now()
    try:
        # The savepoint keeps a caller's transaction usable after the unique violation.
        with transaction.atomic():
            run = ReconcileRun.objects.create(
                pair=pair,
                trigger=trigger,
                requested_by=requested_by,
                repair=repair,
                heartbeat_at=now,  # the queued clock of the reaper starts now
            )
        return run, True
    except IntegrityError:
        # Without beat (no broker: runs go inside web requests) nothing else reaps a run whose
        # worker died, and the one-active-run constraint would block the pair for good.
        reap_stalled_runs(pair_id=pair.id)
        active = ReconcileRun.objects.filter(pair=pair, status__in=ReconcileRun.ACTIVE).first()
        if active is None:  # reaped, or it finished between our insert and this read
            if _retries <= 0:
                raise
            return request_run(
                pair,
                trigger=trigger,
                requested_by=requested_by,
                repair=repair,
                _retries=_retries - 1,
            )
        return active, False


def due_pairs(now: datetime | None = None) -> list[BucketPair]:
    """Enabled pairs with a schedule whose interval has elapsed since their last run."""
    now = now or timezone.now()
    pairs = BucketPair.objects.filter(enabled=True, reconcile_every_minutes__isnull=False).annotate(
        last_run_at=Max("reconcile_runs__created_at")
    )
    # Half a beat tick of slack: a run created a few ms after the minute would otherwise be
    # "not yet due" at the next tick and wait a whole extra interval.
    slack = timedelta(seconds=30)
    return [
        p
        for p in pairs
        if p.last_run_at is None
        or p.last_run_at <= now - timedelta(minutes=p.reconcile_every_minutes) + slack
    ]


# --- Running it -------------------------------------------------------------------------------


def claim_run(run_id: int) -> ReconcileRun | None:
    """Move a queued run to running and cut it into key ranges; None if it was not queued."""
    now = timezone.now()
    with transaction.atomic():
        claimed = ReconcileRun.objects.filter(id=run_id, status=Status.QUEUED).update(
            status=Status.RUNNING, started_at=now, heartbeat_at=now
        )
        if not claimed:
            return None
        run = ReconcileRun.objects.select_related("pair").get(id=run_id)
        previous = (
            ReconcileRun.objects.filter(pair_id=run.pair_id, status=Status.SUCCEEDED)
            .order_by("-created_at", "-id")
            .values_list("range_boundaries", "source_objects")
            .first()
        )
        ranges = split(_cuts(run.pair, previous), settings.RECONCILE_MAX_RANGES)
        ReconcileRange.objects.bulk_create(
            ReconcileRange(run=run, index=i, start_after=r.start_after, end=r.end)
            for i, r in enumerate(ranges)
        )
        run.ranges_total = len(ranges)
        run.save(update_fields=["ranges_total"])
    # What the pair's earlier runs left in flight is settled first (beat does it each minute;
    # a site without beat relies on this).
    settle_earlier_runs(run)
    return run


def _cuts(pair: BucketPair, previous: tuple[list[str], int] | None) -> list[str]:
    """Where to cut a run: at the boundaries the previous run sampled; nowhere for a pair
    it found too small to split; else where probes of the source's key space say, so that
    even a first run lists in parallel ranges."""
    if previous is not None:
        boundaries, source_objects = previous
        if boundaries:
            return boundaries
        if too_small_to_split(source_objects):
            return []  # every run of a small pair would otherwise probe it again, in vain
    return _first_run_cuts(pair)


def _first_run_cuts(pair: BucketPair) -> list[str]:
    s3 = s3_clients.listing_client(pair.region)
    source = Side("source", pair.source_bucket, pair.source_prefix)
    try:
        return first_run_cuts(
            lambda asks: probe_keys(s3, source, asks), settings.RECONCILE_MAX_RANGES
        )
    except ListingError:
        return []  # one range then, whose own listing reports the error with its reason


def run_range(run_id: int, index: int, *, on_progress: ProgressCallback | None = None) -> bool:
    """Reconcile one key range of a running run; a failure fails the whole run, with why.

    False if the range was not this call's to take (see ``claim_range``)."""
    key_range = claim_range(run_id, index)
    if key_range is None:
        return False  # done, the run ended, or another attempt still reports
    run = key_range.run
    try:
        tally, boundaries, repaired = _reconcile(run, key_range, on_progress)
    except RangeSuperseded:
        return True  # a redelivery claimed the range again: that attempt finishes it
    except RunAbandoned:
        _set_range(key_range, RangeStatus.FAILED)
        return True
    except (ListingError, ListingOrderError) as exc:
        _set_range(key_range, RangeStatus.FAILED)
        fail_run(run_id, str(exc))
        return True
    except Exception as exc:
        log.exception("reconcile run %s range %s failed", run_id, index)
        _set_range(key_range, RangeStatus.FAILED)
        fail_run(run_id, f"unexpected error: {type(exc).__name__}: {exc}")
        return True
    counts = tally.as_dict() | {"repaired": 0, "repair_failed": 0} | repaired
    retrying_deadlocks(
        lambda: _record_range_done(key_range, counts, boundaries),
        what=f"reconcile run {run_id} range {index}",
    )
    return True


def _record_range_done(key_range: ReconcileRange, counts: dict, boundaries: list[str]) -> None:
    with transaction.atomic():
        _lock_run(key_range.run_id)  # the run before its range, as everywhere (locks.py)
        done = ReconcileRange.objects.filter(
            id=key_range.id, attempt=key_range.attempt, status=RangeStatus.RUNNING
        ).update(status=RangeStatus.SUCCEEDED, counts=counts, boundaries=boundaries)
        if done:
            ReconcileRun.objects.filter(id=key_range.run_id).update(
                ranges_done=F("ranges_done") + 1
            )


def _lock_run(run_id: int, **conditions) -> bool:
    """Lock the run row for this transaction; False if no run matches ``conditions``."""
    return (
        ReconcileRun.objects.select_for_update()
        .filter(id=run_id, **conditions)
        .values_list("id", flat=True)
        .first()
        is not None
    )


def claim_range(run_id: int, index: int) -> ReconcileRange | None:
    """Take a queued range of a running run, or one whose worker went silent; else None.

    A range task redelivered after its worker died (acks late) finds its range "running"
    with a stale heartbeat: it takes the range over as a new attempt, dropping the rows the
    dead attempt stored, so the run can still finish.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    claimable = Q(status=RangeStatus.QUEUED) | Q(status=RangeStatus.RUNNING, heartbeat_at__lt=stale)
    return retrying_deadlocks(
        lambda: _claim_range(run_id, index, claimable, now), what=f"claiming range {index}"
    )


def _claim_range(run_id: int, index: int, claimable: Q, now: datetime) -> ReconcileRange | None:
    with transaction.atomic():
        if not _lock_run(run_id, status=Status.RUNNING):  # the run before its range
            return None
        key_range = (
            ReconcileRange.objects.select_for_update(of=("self",))
            .select_related("run__pair")
            .filter(claimable, run_id=run_id, index=index, run__status=Status.RUNNING)
            .first()
        )
        if key_range is None:
            return None
        if key_range.status == RangeStatus.RUNNING:
            log.warning(
                "reconcile run %s range %s: attempt %s went silent; claiming it again",
                run_id,
                index,
                key_range.attempt,
            )
            _discard_rows_of(key_range)
        key_range.status = RangeStatus.RUNNING
        key_range.attempt += 1
        key_range.heartbeat_at = now
        key_range.save(update_fields=["status", "attempt", "heartbeat_at"])
        # The run is alive again from now, not from this attempt's first heartbeat a few
        # seconds on: a run taken over from a silent worker is what the reaper looks for.
        keep_run_alive(run_id, now)
    return key_range


def _discard_rows_of(key_range: ReconcileRange) -> None:
    dropped, _ = Discrepancy.objects.filter(
        run_id=key_range.run_id, range_index=key_range.index
    ).delete()
    if dropped:
        ReconcileRun.objects.filter(id=key_range.run_id).update(
            discrepancies_stored=F("discrepancies_stored") - dropped
        )


def _set_range(key_range: ReconcileRange, status: str) -> None:
    ReconcileRange.objects.filter(id=key_range.id, attempt=key_range.attempt).update(status=status)


def _reconcile(
    run: ReconcileRun, key_range: ReconcileRange, on_progress: ProgressCallback | None
) -> tuple[Tally, list[str], dict[str, int]]:
    pair = run.pair
    s3 = s3_clients.client(pair.region)
    source = Side("source", pair.source_bucket, pair.source_prefix)
    backup = Side("backup", pair.backup_bucket, pair.backup_prefix)
    bounds = KeyRange(key_range.start_after, key_range.end)
    heartbeat = Heartbeat(run.id, on_progress, key_range=key_range)
    sampler = BoundarySampler(settings.RECONCILE_RANGE_SIZE)
    writer = DiscrepancyWriter(run, range_index=key_range.index)
    findings = FindingWriter(run, bounds)
    tally = Tally()
    repaired = RepairCounts(heartbeat)
    in_flight_after = timezone.now() - pair.grace_period

    lister = s3_clients.listing_client(pair.region)
    with ParallelListing(lister, source, lister, backup, bounds) as listing:
        source_entries = _entries(listing.source_pages, heartbeat, tally, sampler)
        backup_entries = _entries(listing.backup_pages, heartbeat, tally)
        differences = diff(
            source_entries,
            backup_entries,
            in_flight_after=in_flight_after,
            tally=tally,
            # Only the in-sync objects with an open problem get a finding: the others need
            # not leave the merge at all (a million of them cost seconds of CPU).
            in_sync=findings.wants_in_sync,
            # A young object whose copy is known to have failed is missing, not in flight.
            copy_failed=findings.copy_failed,
            # A key kept at a guard release is neither extra nor mismatched: never repaired.
            kept=findings.kept,
        )
        settled = second_opinion(
            findings.noting(differences),
            tally,
            s3=lister,
            source=source,
            backup=backup,
            threads=settings.RECONCILE_CHECKSUM_THREADS,
        )
        if run.repair:
            # Every missing and mismatched object is copied as it streams by, stored as a
            # row or not: the cap on rows never limits what is repaired.
            outcomes = repairing(
                settled,
                s3=s3,
                pair=pair,
                threads=settings.RECONCILE_REPAIR_THREADS,
                on_found=repaired.found,
                on_wait=lambda: heartbeat.beat(tally.scanned),
                wait_seconds=heartbeat.every,
            )
        else:
            outcomes = ((difference, None) for difference in settled)
        for difference, outcome in outcomes:
            if outcome is not None:
                repaired.record(difference.kind, outcome)
            findings.see(difference, copied=outcome is not None and outcome.done)
            if difference.kind not in (IN_SYNC, KEPT):
                writer.add(difference, outcome)
    writer.flush()
    if run.repair and pair.mirror_deletes and tally.source_objects:
        # Never on an empty source listing: a wrong bucket or prefix lists nothing.
        _delete_extras(s3, run, key_range, heartbeat, tally, findings, repaired)
    findings.flush()
    heartbeat.beat(tally.scanned, force=True)
    return tally, sampler.boundaries, repaired.counts if run.repair else {}


class RepairCounts:
    """What a range's repair did, by kind, for the range's counts; live on the run through
    the heartbeat, so the page can say "copying 1,234 of 5,000"."""

    def __init__(self, heartbeat: Heartbeat):
        self.heartbeat = heartbeat
        self.counts = {"repair_total": 0, "repaired": 0, "repair_failed": 0}

    def found(self) -> None:
        self.counts["repair_total"] += 1
        self.heartbeat.count(repair_total=1)

    def record(self, kind: str, outcome: Repaired) -> None:
        if outcome.done:
            self._add("repaired")
            self._add(f"repaired_{kind}")
        elif outcome.outcome == Discrepancy.Repair.FAILED:
            self._add("repair_failed")

    def _add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if name in ("repaired", "repair_failed"):
            self.heartbeat.count(**{name: 1})


def _delete_extras(s3, run, key_range, heartbeat, tally, findings, repaired) -> None:
    """Delete the range's stored extras (a pair that mirrors deletes); each deleted one gets a
    finding."""
    rows = list(
        Discrepancy.objects.filter(
            run=run, range_index=key_range.index, kind=Discrepancy.Kind.EXTRA
        ).order_by("id")
    )
    if not rows:
        return
    delete_extras(
        s3,
        run.pair,
        rows,
        threads=settings.RECONCILE_REPAIR_THREADS,
        on_done=lambda: heartbeat.beat(tally.scanned),
    )
    update_rows(Discrepancy, rows, ["repaired", "repair_outcome", "repair_error"])
    for row in rows:
        repaired.record(Discrepancy.Kind.EXTRA, Repaired(row.repair_outcome, row.repair_error))
        if row.repaired:
            findings.deleted(run.pair.relative_source_key(row.key))


def _entries(
    pages: Iterator[list[Entry]],
    heartbeat: Heartbeat,
    tally: Tally,
    sampler: BoundarySampler | None = None,
) -> Iterator[Entry]:
    """One side's entries, page by page: sampled for the next run's boundaries, and a
    heartbeat after each page (per page, not per entry: this runs for every object)."""
    for page in pages:
        if sampler is not None:
            sampler.see_all(page, key=_KEY)
        yield from page
        heartbeat.beat(tally.scanned)


_KEY = attrgetter("key")


# --- Ending it --------------------------------------------------------------------------------


# What a range's repair counted (RepairCounts), summed into the run's fields of those names.
_REPAIR_COUNTS = (
    "repair_total",
    "repaired",
    "repair_failed",
    "repaired_missing",
    "repaired_mismatched",
    "repaired_extra",  # the run's extras_deleted
)


def finish_run(run_id: int) -> ReconcileRun | None:
    """Combine the ranges' counts into the run once all succeeded; the chord's last step."""
    with transaction.atomic():
        run = ReconcileRun.objects.select_for_update().filter(id=run_id).first()
        if run is None or run.status != Status.RUNNING:
            return run
        ranges = list(run.ranges.order_by("index"))
        if any(r.status != RangeStatus.SUCCEEDED for r in ranges):
            # A range that failed has already failed the run; one still running is not done.
            return run
        tally = Tally()
        boundaries: list[str] = []
        # The live repair counts the heartbeats saved may include an attempt that was taken
        # over: the ranges' own counts are exact.
        repair = dict.fromkeys(_REPAIR_COUNTS, 0)
        for r in ranges:
            tally.add(Tally.from_dict(r.counts))
            for name in repair:
                repair[name] += r.counts.get(name, 0)
            boundaries.extend(r.boundaries)
        repair["extras_deleted"] = repair.pop("repaired_extra")
        for name, value in repair.items():
            setattr(run, name, value)
        for name, value in tally.as_dict().items():
            setattr(run, name, value)
        run.objects_scanned = tally.scanned
        run.range_boundaries = boundaries
        run.status = Status.SUCCEEDED
        # The raw counts stay as found; the verdict is about the backup as the repair left it.
        run.verdict = verdict(
            missing=run.missing - run.repaired_missing,
            mismatched=run.mismatched - run.repaired_mismatched,
            extra=run.extra - run.extras_deleted,
            unverified=run.unverified,
            mirror_deletes=run.pair.mirror_deletes,
            source_objects=run.source_objects,
            destination_objects=run.destination_objects,
        )
        run.finished_at = run.heartbeat_at = timezone.now()
        run.save()
    return run

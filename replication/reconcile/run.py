"""Running a reconcile: claim the run, reconcile each key range, combine, and record it.

Every state change is a conditional update on the row (``filter(status=...).update(...)``),
so a task delivered twice, a worker that died, and the reaper can never make a run count
twice or come back to life. Celery is not imported here: replication/tasks.py decides
whether the ranges run inline or as a chord of tasks on several workers.
"""

import gc
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from operator import attrgetter

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from replication import s3 as s3_clients
from replication.models import BucketPair, Discrepancy, ReconcileRange, ReconcileRun
from replication.reconcile.cores import usable_cores
from replication.reconcile.diff import IN_SYNC, Difference, Entry, ListingOrderError, Tally, diff
from replication.reconcile.findings import FindingWriter
from replication.reconcile.listing import ListingError, ParallelListing, Side, probe_keys
from replication.reconcile.ranges import (
    BoundarySampler,
    KeyRange,
    first_run_cuts,
    split,
    too_small_to_split,
)
from replication.reconcile.repair import repair, repairable_kinds
from replication.reconcile.verdict import verdict
from replication.reconcile.verify import second_opinion
from replication.rows import insert_rows

log = logging.getLogger(__name__)

Status = ReconcileRun.Status
RangeStatus = ReconcileRange.Status
ProgressCallback = Callable[[int], None]

_FLUSH_ROWS = 500


class RunAbandoned(Exception):
    """The run stopped being ours (failed by another range or by the reaper): stop working."""


class RangeSuperseded(Exception):
    """A redelivery claimed this range again after this attempt looked dead: stop working."""


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


def reconcile_inline(
    run_id: int,
    *,
    on_progress: ProgressCallback | None = None,
    boundaries: Iterable[str] | None = None,
    processes: int | None = None,
) -> ReconcileRun | None:
    """Claim and run every range of ``run_id`` here, then finish the run.

    The ranges run on this process's threads, shared among ``processes`` forked processes
    (by default inline_processes()). ``boundaries`` overrides the ranges taken from the
    previous run (tests and benchmarks).
    """
    run = claim_run(run_id)
    if run is None:
        return None
    if boundaries is not None:
        boundaries = list(boundaries)
        _replace_ranges(run, split(boundaries, max_ranges=len(boundaries) + 1))
    indices = list(range(run.ranges_total))
    threads = min(settings.RECONCILE_INLINE_RANGES, run.ranges_total)
    processes = min(processes or inline_processes(), run.ranges_total)
    # A range on another thread has its own database connection, which cannot see a caller's
    # open transaction (tests): inside one, the ranges run one after the other.
    if threads <= 1 or connection.in_atomic_block:
        for index in indices:
            run_range(run_id, index, on_progress=on_progress)
    elif processes > 1:
        _run_ranges_in_processes(run_id, indices, processes, threads)
    else:
        _run_ranges_in_threads(run_id, _InTurn(indices), threads, on_progress)
    return finish_run(run_id)


# The default's ceiling on a large machine: the RECONCILE_INLINE_RANGES threads are shared
# among the processes, and each process holds some 100 MB at a million objects.
MAX_AUTO_PROCESSES = 4


def inline_processes() -> int:
    """RECONCILE_INLINE_PROCESSES, or for 0 one per core this process may use (at most
    MAX_AUTO_PROCESSES); 1 on an in-memory SQLite database, which a forked child cannot
    write to."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        return 1
    wanted = settings.RECONCILE_INLINE_PROCESSES
    return wanted if wanted > 0 else min(usable_cores(), MAX_AUTO_PROCESSES)


def spare_the_garbage_collector(
    region: str | None = None, *, clients: bool = True
) -> tuple[int, int, int]:
    """Keep the collector off what a reconciling process loaded and holds to its end.

    A listing makes millions of short-lived entries, which trigger collections; each full
    one walked everything Django, Celery and botocore's S3 model (12 MB) had loaded, though
    nothing of it is ever garbage. Frozen, those objects are not walked; fewer, larger young
    collections do the rest. The clients are made first, unless ``clients`` is false, so
    that their models are frozen too (a forked range process inherits all of it). Returns
    the thresholds it replaced.
    """
    if clients:
        s3_clients.client(region)
        s3_clients.listing_client(region)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    return thresholds


class _InTurn:
    """Hands ``indices`` out one at a time to whichever thread, or forked process sharing
    its counter, is free: a small range then leaves no thread or core idle."""

    def __init__(self, indices: list[int], context=None):
        self.indices = indices
        self.taken = (context or multiprocessing.get_context("fork")).Value("i", 0)

    def __call__(self) -> int | None:
        with self.taken.get_lock():
            at = self.taken.value
            self.taken.value = at + 1
        return self.indices[at] if at < len(self.indices) else None


def _run_ranges_in_threads(
    run_id: int, take: Callable[[], int | None], threads: int, on_progress: ProgressCallback | None
) -> None:
    lock = threading.Lock()

    def progress(objects: int) -> None:
        with lock:
            on_progress(objects)

    def work() -> None:
        try:
            while (index := take()) is not None:
                run_range(run_id, index, on_progress=progress if on_progress else None)
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="range") as pool:
        for done in [pool.submit(work) for _ in range(threads)]:
            done.result()


def _run_ranges_in_processes(run_id: int, indices: list[int], processes: int, threads: int):
    """The ranges shared among forked processes, each running some at once on threads.

    Parsing listings is CPU work that one process's threads do one at a time; processes
    use the other cores, as Celery workers do across machines.
    """
    connections.close_all()  # a forked child must open its own
    context = multiprocessing.get_context("fork")
    take = _InTurn(indices, context)
    per_process = max(1, threads // processes)
    children = [
        context.Process(target=_run_share, args=(run_id, take, per_process))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    failed = [child.exitcode for child in children if child.exitcode != 0]
    if failed:  # killed (out of memory, say) or crashed: its ranges never finished
        log.error("reconcile run %s: a range process exited with %s", run_id, failed[0])
        fail_run(run_id, f"a range process failed: exit code {failed[0]}")


def _run_share(run_id: int, take: _InTurn, threads: int) -> None:
    s3_clients.reset_clients()  # the parent's pooled connections are not this process's
    try:
        _run_ranges_in_threads(run_id, take, threads, None)
    finally:
        connections.close_all()


def _replace_ranges(run: ReconcileRun, ranges: list[KeyRange]) -> None:
    run.ranges.all().delete()
    ReconcileRange.objects.bulk_create(
        ReconcileRange(run=run, index=i, start_after=r.start_after, end=r.end)
        for i, r in enumerate(ranges)
    )
    run.ranges_total = len(ranges)
    run.save(update_fields=["ranges_total"])


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
    with transaction.atomic():
        done = ReconcileRange.objects.filter(
            id=key_range.id, attempt=key_range.attempt, status=RangeStatus.RUNNING
        ).update(status=RangeStatus.SUCCEEDED, counts=counts, boundaries=boundaries)
        if done:
            ReconcileRun.objects.filter(id=run_id).update(ranges_done=F("ranges_done") + 1)
    return True


def claim_range(run_id: int, index: int) -> ReconcileRange | None:
    """Take a queued range of a running run, or one whose worker went silent; else None.

    A range task redelivered after its worker died (acks late) finds its range "running"
    with a stale heartbeat: it takes the range over as a new attempt, dropping the rows the
    dead attempt stored, so the run can still finish.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    claimable = Q(status=RangeStatus.QUEUED) | Q(status=RangeStatus.RUNNING, heartbeat_at__lt=stale)
    with transaction.atomic():
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


def seconds_until_stale(run_id: int, index: int) -> float | None:
    """How long until ``claim_range`` may take this range from the attempt that holds it.

    None unless the range is running, in a running run, with a heartbeat younger than
    RECONCILE_HEARTBEAT_TIMEOUT: a task that finds it so cannot tell a live worker from one
    that died moments ago, and must look again once a live one would have reported.
    """
    heartbeat_at = (
        ReconcileRange.objects.filter(
            run_id=run_id, index=index, status=RangeStatus.RUNNING, run__status=Status.RUNNING
        )
        .values_list("heartbeat_at", flat=True)
        .first()
    )
    if heartbeat_at is None:
        return None
    stale_at = heartbeat_at + timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    return max(0.0, (stale_at - timezone.now()).total_seconds())


def keep_run_alive(run_id: int, now: datetime | None = None) -> None:
    """Show a running run alive from ``now``, which keeps the reaper off it for another
    RECONCILE_HEARTBEAT_TIMEOUT: a range was just taken over, or will be by a waiting retry."""
    ReconcileRun.objects.filter(id=run_id, status=Status.RUNNING).update(
        heartbeat_at=now or timezone.now()
    )


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
    writer = DiscrepancyWriter(run, keep_for_repair=run.repair, range_index=key_range.index)
    findings = FindingWriter(run, bounds)
    tally = Tally()
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
        )
        for difference in second_opinion(
            findings.noting(differences),
            tally,
            s3=lister,
            source=source,
            backup=backup,
            threads=settings.RECONCILE_CHECKSUM_THREADS,
        ):
            findings.see(difference)
            if difference.kind != IN_SYNC:
                writer.add(difference)
    writer.flush()
    findings.flush()
    heartbeat.beat(tally.scanned, force=True)

    repaired: dict[str, int] = {}
    if run.repair:
        repaired = _repair(s3, pair, writer.kept, heartbeat, tally, findings)
    return tally, sampler.boundaries, repaired


def _entries(
    pages: Iterator[list[Entry]],
    heartbeat: "Heartbeat",
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


def _repair(
    s3, pair, rows: list[Discrepancy], heartbeat: "Heartbeat", tally: Tally, findings
) -> dict[str, int]:
    """Repair the kept rows; the counts of what it fixed, by kind, and of what failed."""
    wanted_kinds = repairable_kinds(pair)
    wanted = [row for row in rows if row.kind in wanted_kinds]
    repair(
        s3,
        pair,
        wanted,
        threads=settings.RECONCILE_REPAIR_THREADS,
        on_done=lambda: heartbeat.beat(tally.scanned),
    )
    Discrepancy.objects.bulk_update(
        wanted, ["repaired", "repair_outcome", "repair_error"], batch_size=_FLUSH_ROWS
    )
    counts = {"repaired": 0, "repair_failed": 0}
    for row in wanted:
        if row.repaired:
            counts["repaired"] += 1
            counts[f"repaired_{row.kind}"] = counts.get(f"repaired_{row.kind}", 0) + 1
            if row.repair_outcome == Discrepancy.Repair.COPIED:
                findings.repaired(pair.relative_source_key(row.key), row.source_last_modified)
        elif row.repair_outcome == Discrepancy.Repair.FAILED:
            counts["repair_failed"] += 1
    findings.flush()
    return counts


class Heartbeat:
    """Saves progress and the heartbeat every few seconds; reports progress more often.

    The save is conditional on the run still running: a run failed meanwhile (by another
    range or by the reaper) raises RunAbandoned here, and this range stops.
    """

    def __init__(
        self,
        run_id: int,
        on_progress: ProgressCallback | None = None,
        *,
        key_range: ReconcileRange | None = None,
    ):
        self.run_id = run_id
        self.key_range = key_range
        self.on_progress = on_progress
        self.every = settings.RECONCILE_PROGRESS_SECONDS
        self.saved_at = time.monotonic()
        self.saved = 0
        self.reported = 0

    def beat(self, scanned: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.saved_at >= self.every:
            updated = ReconcileRun.objects.filter(id=self.run_id, status=Status.RUNNING).update(
                objects_scanned=F("objects_scanned") + (scanned - self.saved),
                heartbeat_at=timezone.now(),
            )
            if not updated:
                raise RunAbandoned
            if self.key_range is not None:
                ours = ReconcileRange.objects.filter(
                    id=self.key_range.id, attempt=self.key_range.attempt
                ).update(heartbeat_at=timezone.now())
                if not ours:
                    raise RangeSuperseded
            self.saved, self.saved_at = scanned, now
        if self.on_progress and scanned != self.reported:
            self.on_progress(scanned - self.reported)
            self.reported = scanned


class DiscrepancyWriter:
    """Stores discrepancy rows in batches, at most RECONCILE_MAX_DISCREPANCY_ROWS per run.

    Ranges of one run write concurrently, so each batch first reserves its share of the cap
    on the run row; once the cap is reached rows are dropped (the counts stay complete).
    """

    def __init__(self, run: ReconcileRun, *, keep_for_repair: bool, range_index: int | None = None):
        self.run = run
        self.range_index = range_index
        self.cap = settings.RECONCILE_MAX_DISCREPANCY_ROWS
        self.keep_for_repair = keep_for_repair
        self.pending: list[Difference] = []
        self.kept: list[Discrepancy] = []
        self.full = False

    def add(self, difference: Difference) -> None:
        if self.full:
            return
        self.pending.append(difference)
        if len(self.pending) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        granted = self._reserve(len(self.pending))
        differences = self.pending[:granted]
        if granted < len(self.pending):
            self.full = True
        self.pending = []
        if not differences:
            return
        if self.keep_for_repair:
            # The repair updates the rows it acts on: model instances, with their ids.
            rows = [self._row(d) for d in differences]
            Discrepancy.objects.bulk_create(rows)
            self.kept.extend(rows)
        else:
            insert_discrepancies(self.run, self.range_index, differences)

    def _row(self, difference: Difference) -> Discrepancy:
        values = _values(self.run.pair.source_prefix, self.range_index, difference)
        return Discrepancy(run=self.run, **dict(zip(_DIFFERENCE_COLUMNS, values, strict=True)))

    def _reserve(self, wanted: int) -> int:
        with transaction.atomic():
            stored = (
                ReconcileRun.objects.select_for_update()
                .values_list("discrepancies_stored", flat=True)
                .get(id=self.run.id)
            )
            granted = max(0, min(wanted, self.cap - stored))
            if granted:
                ReconcileRun.objects.filter(id=self.run.id).update(
                    discrepancies_stored=F("discrepancies_stored") + granted
                )
        return granted


# What a difference says of itself, the same for a model instance and an inserted row.
_DIFFERENCE_COLUMNS = (
    "key",
    "range_index",
    "kind",
    "source_size",
    "source_etag",
    "source_last_modified",
    "backup_size",
    "backup_etag",
    "backup_last_modified",
)


def _values(prefix: str, range_index: int | None, difference: Difference) -> tuple:
    """``difference`` as the values of _DIFFERENCE_COLUMNS."""
    source, backup = difference.source, difference.backup
    return (
        # The source key as S3 names it, the one convention for people (see Discrepancy).
        prefix + difference.key,
        range_index,
        difference.kind,
        source.size if source else None,
        source.etag if source else "",
        source.last_modified if source else None,
        backup.size if backup else None,
        backup.etag if backup else "",
        backup.last_modified if backup else None,
    )


def insert_discrepancies(run: ReconcileRun, range_index: int | None, differences) -> None:
    """The rows DiscrepancyWriter._row would make, in multi-row INSERTs without model
    instances (a tenth of bulk_create's CPU: tens of thousands of rows in a large run)."""
    columns = ("run", *_DIFFERENCE_COLUMNS, "repaired", "repair_outcome", "repair_error")
    fields = [Discrepancy._meta.get_field(name) for name in columns]
    moment = Discrepancy._meta.get_field("source_last_modified")
    prepared: dict = {}  # a listing repeats few distinct timestamps

    def when(value):
        if value not in prepared:
            prepared[value] = moment.get_db_prep_save(value, connection)
        return prepared[value]

    prefix = run.pair.source_prefix
    rows = []
    for d in differences:
        values = [
            when(v) if isinstance(v, datetime) else v for v in _values(prefix, range_index, d)
        ]
        rows.append((run.id, *values, False, "", ""))
    insert_rows(Discrepancy, fields, rows)


# --- Ending it --------------------------------------------------------------------------------


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
        fixed = {kind: 0 for kind in ("missing", "mismatched", "extra")}
        for r in ranges:
            tally.add(Tally.from_dict(r.counts))
            run.repaired += r.counts.get("repaired", 0)
            run.repair_failed += r.counts.get("repair_failed", 0)
            for kind in fixed:
                fixed[kind] += r.counts.get(f"repaired_{kind}", 0)
            boundaries.extend(r.boundaries)
        for name, value in tally.as_dict().items():
            setattr(run, name, value)
        run.objects_scanned = tally.scanned
        run.range_boundaries = boundaries
        run.status = Status.SUCCEEDED
        # The raw counts stay as found; the verdict is about the backup as the repair left it.
        run.verdict = verdict(
            missing=run.missing - fixed["missing"],
            mismatched=run.mismatched - fixed["mismatched"],
            extra=run.extra - fixed["extra"],
            unverified=run.unverified,
            mirror_deletes=run.pair.mirror_deletes,
        )
        run.finished_at = run.heartbeat_at = timezone.now()
        run.save()
    return run


def fail_run(
    run_id: int,
    reason: str,
    *,
    statuses: Iterable[str] = ReconcileRun.ACTIVE,
    heartbeat_before: datetime | None = None,
) -> bool:
    """Mark a run failed with a one-line reason, unless it already ended. True if it was.

    ``heartbeat_before`` makes it conditional on the run still being silent, in the same
    statement: a slow worker that reported a moment ago is not failed.
    """
    now = timezone.now()
    runs = ReconcileRun.objects.filter(id=run_id, status__in=list(statuses))
    if heartbeat_before is not None:
        runs = runs.filter(heartbeat_at__lt=heartbeat_before)
    with transaction.atomic():
        failed = runs.update(
            status=Status.FAILED, finished_at=now, heartbeat_at=now, error=reason[:2000]
        )
        if failed:
            ReconcileRange.objects.filter(
                run_id=run_id, status__in=[RangeStatus.QUEUED, RangeStatus.RUNNING]
            ).update(status=RangeStatus.FAILED)
    return bool(failed)


def reap_stalled_runs(now: datetime | None = None, *, pair_id: int | None = None) -> list[int]:
    """Fail runs whose worker is gone: running without a heartbeat, or queued for too long.

    Beat calls it every minute for all pairs; ``request_run`` for one pair, lazily.
    """
    now = now or timezone.now()
    silent_since = now - timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT)
    queued_since = now - timedelta(seconds=settings.RECONCILE_QUEUED_TIMEOUT)
    reaped = []
    runs = (
        ReconcileRun.objects.all()
        if pair_id is None
        else ReconcileRun.objects.filter(pair_id=pair_id)
    )
    stalled = runs.filter(status=Status.RUNNING, heartbeat_at__lt=silent_since)
    for run_id, heartbeat_at in stalled.values_list("id", "heartbeat_at"):
        reason = (
            f"the worker stopped reporting (no heartbeat since {heartbeat_at:%Y-%m-%d %H:%M:%S} "
            "UTC): it was killed, lost its connection or ran out of memory. Run it again."
        )
        if fail_run(run_id, reason, statuses=[Status.RUNNING], heartbeat_before=silent_since):
            reaped.append(run_id)
    never_started = runs.filter(status=Status.QUEUED, heartbeat_at__lt=queued_since)
    for run_id in never_started.values_list("id", flat=True):
        reason = (
            f"no worker started it within {settings.RECONCILE_QUEUED_TIMEOUT // 60} minutes: "
            "check that a Celery worker is running and reaches the broker"
        )
        if fail_run(run_id, reason, statuses=[Status.QUEUED], heartbeat_before=queued_since):
            reaped.append(run_id)
    return reaped

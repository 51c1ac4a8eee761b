"""Running every range of a run in this process: on threads, shared among forked processes.

For the command, for a site without a broker (tasks run eagerly) and for one-range runs;
with workers, replication/tasks.py sends the ranges to the queue instead.
"""

import gc
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection, connections

from replication import s3 as s3_clients
from replication.models import ReconcileRange, ReconcileRun
from replication.reconcile.cores import usable_cores
from replication.reconcile.ranges import KeyRange, split
from replication.reconcile.reaper import fail_run
from replication.reconcile.run import ProgressCallback, claim_run, finish_run, run_range

log = logging.getLogger(__name__)


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

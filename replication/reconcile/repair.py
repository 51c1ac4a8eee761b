"""Repair: copy what the backup lacks, delete what it should not keep. I/O edge.

Copies and deletes go through the Lambda handler's own functions, so a repaired object is copied
exactly as the event path would have copied it (ETag kept, part boundaries kept, metadata and
tags kept) and a change of the source since the listing is caught, not copied blindly.

Missing and mismatched objects are copied as the differences stream out of the merge
(``repairing``), every one of them, whatever the cap on stored discrepancy rows: a pair whose
rows fill with extras still gets its missing objects back. Extras are deleted afterwards from
the stored rows (``delete_extras``), only where the pair mirrors deletes and only when the
range's source listing was not empty (a wrong bucket or prefix lists nothing).
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from replication.lambda_function import CopyOutcome, copy_object, mirror_delete
from replication.models import BucketPair, Discrepancy
from replication.reconcile.diff import MISMATCHED, MISSING, Difference

Kind = Discrepancy.Kind
Repair = Discrepancy.Repair

# The kinds copied from the source; extras are the only other kind a repair acts on.
COPIED_KINDS = frozenset({MISSING, MISMATCHED})
# Copies in flight per thread while the merge goes on, and differences waiting behind them.
_WINDOW_PER_THREAD = 4
MAX_WAITING = 2_000


class Repaired(NamedTuple):
    """What a repair did to one object: a Discrepancy.Repair value, and the error if any."""

    outcome: str
    error: str = ""

    @property
    def done(self) -> bool:
        return self.outcome in (Repair.COPIED, Repair.DELETED)


def repairing(
    differences: Iterable[Difference],
    *,
    s3,
    pair: BucketPair,
    threads: int,
    on_found: Callable[[], None] | None = None,
    on_wait: Callable[[], None] | None = None,
    wait_seconds: float = 5.0,
) -> Iterator[tuple[Difference, Repaired | None]]:
    """``differences`` in the same order, each with what the repair did to it (None for the
    kinds it leaves alone); missing and mismatched objects are copied on a bounded pool while
    the merge goes on.

    ``on_found`` is called as each object to copy is found; ``on_wait`` every
    ``wait_seconds`` while the oldest copy is still going (one large object can take many
    minutes: the caller keeps its run alive from there). Both run on the caller's thread.
    """
    threads = max(1, threads)
    window = threads * _WINDOW_PER_THREAD
    pending: deque[tuple[Difference, Future | None]] = deque()
    pool: ThreadPoolExecutor | None = None
    copying = 0

    def result_of(future: Future) -> Repaired:
        while True:
            try:
                return future.result(timeout=wait_seconds)
            except TimeoutError:
                if on_wait:
                    on_wait()

    def next_out() -> tuple[Difference, Repaired | None]:
        nonlocal copying
        difference, future = pending.popleft()
        if future is None:
            return difference, None
        copying -= 1
        return difference, result_of(future)

    try:
        for difference in differences:
            if difference.kind in COPIED_KINDS:
                if pool is None:
                    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="repair")
                if on_found:
                    on_found()
                pending.append((difference, pool.submit(copy_difference, s3, pair, difference)))
                copying += 1
            elif pending:
                pending.append((difference, None))  # waits its turn: rows stay in key order
            else:
                yield difference, None
                continue
            while copying > window or len(pending) > MAX_WAITING:
                yield next_out()
        while pending:
            yield next_out()
    finally:
        if pool is not None:
            # Left early (the run was abandoned, a listing failed): drop copies not started.
            pool.shutdown(wait=True, cancel_futures=True)


def copy_difference(s3, pair: BucketPair, difference: Difference) -> Repaired:
    source_key = pair.source_prefix + difference.key  # the source key as S3 names it
    outcome = copy_object(
        s3,
        pair.source_bucket,
        source_key,
        pair.backup_bucket,
        pair.backup_key(source_key),
        # The listing's ETag: if the source changed since, the copy is skipped, not made.
        expected_etag=difference.source.etag or None,
    )
    return _repaired(outcome)


def delete_extras(
    s3,
    pair: BucketPair,
    rows: Iterable[Discrepancy],
    *,
    threads: int,
    on_done: Callable[[], None] | None = None,
) -> list[Discrepancy]:
    """Delete the backup copy of each extra row, set its outcome fields (unsaved), and
    return the rows."""

    def one(row: Discrepancy) -> Discrepancy:
        outcome = mirror_delete(
            s3, pair.source_bucket, row.key, pair.backup_bucket, pair.backup_key(row.key)
        )
        repaired = _repaired(outcome)
        row.repair_outcome, row.repair_error = repaired.outcome, repaired.error
        row.repaired = repaired.outcome == Repair.DELETED
        return row

    rows = list(rows)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="repair") as pool:
        done = list(pool.map(one, rows))
    if on_done:
        on_done()
    return done


def _repaired(outcome: CopyOutcome) -> Repaired:
    error = " ".join(p for p in (outcome.error_code, outcome.error_message) if p)
    return Repaired(outcome.status, error)

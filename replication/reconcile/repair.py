"""Repair: copy what the backup lacks, delete what it should not keep. I/O edge.

Copies and deletes go through the Lambda handler's own functions, so a repaired object is copied
exactly as the event path would have copied it (ETag kept, part boundaries kept, metadata and
tags kept) and a change of the source since the listing is caught, not copied blindly.
"""

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from replication.lambda_function import CopyOutcome, copy_object, mirror_delete
from replication.models import BucketPair, Discrepancy

Kind = Discrepancy.Kind
Repair = Discrepancy.Repair


def repairable_kinds(pair: BucketPair) -> set[str]:
    """The kinds a repair acts on. Extras only where the pair mirrors deletes: by default a
    backup keeps what the source lost. Unverified and in-flight objects are left alone."""
    kinds = {Kind.MISSING, Kind.MISMATCHED}
    if pair.mirror_deletes:
        kinds.add(Kind.EXTRA)
    return kinds


def repair(
    s3,
    pair: BucketPair,
    rows: Iterable[Discrepancy],
    *,
    threads: int,
    on_done: Callable[[], None] | None = None,
) -> list[Discrepancy]:
    """Repair each row, set its outcome fields (unsaved), and return the rows."""

    def one(row: Discrepancy) -> Discrepancy:
        if row.kind == Kind.EXTRA:
            _delete_extra(s3, pair, row)
        else:
            _copy(s3, pair, row)
        if on_done:
            on_done()
        return row

    rows = list(rows)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="repair") as pool:
        return list(pool.map(one, rows))


def _copy(s3, pair: BucketPair, row: Discrepancy) -> None:
    outcome = copy_object(
        s3,
        pair.source_bucket,
        row.key,  # the source key, prefix included (see Discrepancy.key)
        pair.backup_bucket,
        pair.backup_key(row.key),
        # The listing's ETag: if the source changed since, the copy is skipped, not made.
        expected_etag=row.source_etag or None,
    )
    _record(row, outcome, done=Repair.COPIED)


def _delete_extra(s3, pair: BucketPair, row: Discrepancy) -> None:
    # Deletes only if the source key is really gone: it may have been written since the listing.
    outcome = mirror_delete(
        s3,
        pair.source_bucket,
        row.key,
        pair.backup_bucket,
        pair.backup_key(row.key),
    )
    _record(row, outcome, done=Repair.DELETED)


def _record(row: Discrepancy, outcome: CopyOutcome, *, done: str) -> None:
    row.repair_outcome = outcome.status
    row.repaired = outcome.status == done
    row.repair_error = " ".join(p for p in (outcome.error_code, outcome.error_message) if p)

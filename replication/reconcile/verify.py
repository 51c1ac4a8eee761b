"""The second opinion's I/O: HEAD both sides of undecided differences as they stream. I/O edge.

Sits between the merge and the discrepancy writer. A difference worth checking
(replication/reconcile/checksums.py decides which, and what the answers mean) is HEADed with
``ChecksumMode=ENABLED`` on a bounded thread pool while the merge goes on; differences leave in
key order once their HEADs are back. At most ``threads * 4`` HEADed differences, and
``MAX_WAITING`` differences in all, wait, so memory stays bounded whatever the number of
differences; objects in sync, which pass through for the findings, queue behind a HEAD
without counting towards the HEADs' window, so the listing does not stall on each HEAD's
latency. No pool is started and no HEAD made when nothing is
worth checking: an in-sync pair costs nothing more.

A HEAD that fails (denied, the object deleted since the listing, throttled past botocore's
retries, a timeout) leaves the listing's classification: a second opinion never fails a run.
"""

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError

from replication.reconcile.checksums import (
    ObjectChecksum,
    from_head,
    reclassify,
    settle,
    worth_checking,
)
from replication.reconcile.diff import UNVERIFIED, Difference, Entry, Tally
from replication.reconcile.listing import Side

log = logging.getLogger(__name__)

# Differences held per thread while their HEADs are in flight: enough to keep the pool busy
# while the merge goes on, few enough that waiting rows cost nothing.
_WINDOW_PER_THREAD = 4
# Differences of any kind waiting behind a HEAD, per range: about one HEAD's latency of
# listing (a range lists some 20,000 keys a second), under a MB.
MAX_WAITING = 2_000

Heads = tuple[ObjectChecksum | None, ObjectChecksum | None]


def head_checksum(
    s3, bucket: str, key: str, failures: list[str] | None = None, listed: Entry | None = None
) -> ObjectChecksum | None:
    """The object's checksum as HEAD reports it, or None if the HEAD failed (said in
    ``failures``). A HEAD refused with 400 is what S3 answers for an object encrypted with
    a customer key (SSE-C) asked without it: given the ``listed`` entry, that is the listed
    object with an ETag that is no MD5."""
    try:
        response = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 400 and listed is not None:
            return ObjectChecksum(listed.etag, listed.size, etag_is_md5=False)
        if failures is not None:
            failures.append(f"s3://{bucket}/{key}: {exc}")  # list.append is atomic
        return None
    except BotoCoreError as exc:
        if failures is not None:
            failures.append(f"s3://{bucket}/{key}: {exc}")
        return None
    return from_head(response)


def second_opinion(
    differences: Iterable[Difference],
    tally: Tally,
    *,
    s3,
    source: Side,
    backup: Side,
    threads: int,
) -> Iterator[Difference]:
    """``differences`` with those checksums settle re-classified (and ``tally`` moved to match);
    the ones proven in sync come out as kind IN_SYNC, for the findings."""
    threads = max(1, threads)
    window = threads * _WINDOW_PER_THREAD
    pending: deque[tuple[Difference, Future | None]] = deque()
    pool: ThreadPoolExecutor | None = None
    failures: list[str] = []

    def heads(difference: Difference) -> Heads:
        source_key = source.prefix + difference.key
        source_head = head_checksum(s3, source.bucket, source_key, failures, difference.source)
        if source_head is None or (
            source_head.algorithm is None
            # Nothing to compare the backup's checksum with, and nothing its encryption could
            # change: an unverified object stays so, a mismatch with an encrypted source is
            # unverified already. A plain source's mismatch asks whether the backup is
            # encrypted (a KMS backup of a plain source is the usual case).
            and (difference.kind == UNVERIFIED or not source_head.etag_is_md5)
        ):
            return source_head, None  # spare the backup's HEAD
        backup_key = backup.prefix + difference.key
        return source_head, head_checksum(
            s3, backup.bucket, backup_key, failures, difference.backup
        )

    def resolve(difference: Difference, future: Future | None) -> Difference:
        if future is None:
            return difference
        source_head, backup_head = future.result()
        return reclassify(difference, settle(difference, source_head, backup_head), tally)

    heading = 0  # differences in ``pending`` with a HEAD

    def next_out() -> Difference:
        nonlocal heading
        difference, future = pending.popleft()
        heading -= future is not None
        return resolve(difference, future)

    try:
        for difference in differences:
            if worth_checking(difference):
                if pool is None:
                    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="checksum")
                pending.append((difference, pool.submit(heads, difference)))
                heading += 1
            elif pending:
                pending.append((difference, None))  # waits its turn: rows stay in key order
            else:
                yield difference
                continue
            while heading > window or len(pending) > MAX_WAITING:
                yield next_out()
        while pending:
            yield next_out()
    finally:
        if pool is not None:
            # Left early (the run was abandoned, a listing failed): drop HEADs not yet started.
            pool.shutdown(wait=True, cancel_futures=True)
        if failures:
            # One line per range, not per object: a denied HEAD tends to be denied for all.
            log.warning(
                "%d checksum HEADs failed; those objects keep the listing's verdict (first: %s)",
                len(failures),
                failures[0],
            )

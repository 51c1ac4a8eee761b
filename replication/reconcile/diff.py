"""The reconcile diff: one streaming merge of two sorted listings. Pure Python.

This module imports neither Django nor boto3, so it is tested directly and fast. It holds
one entry of each side at a time: memory does not grow with the size of the buckets.

Order. S3 lists keys in ascending order of their UTF-8 bytes, and the merge must walk both
listings in that same order or it would report a key as missing on one side and extra on the
other. Python compares ``str`` by code point, and UTF-8 was designed so that byte order and
code point order agree for every valid string; so comparing the decoded keys *is* byte
order (tests/test_reconcile_diff.py proves it on the characters where UTF-16 order, used by
Java and JavaScript, does not). What the merge cannot survive is a listing that is not in
that order at all (some S3-compatible servers); it raises ListingOrderError rather than
report wrong differences.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import NamedTuple

# The categories, as stored in Discrepancy.kind.
MISSING = "missing"  # in the source only, older than the grace period or its copy failed
EXTRA = "extra"  # in the backup only
MISMATCHED = "mismatched"  # in both, and provably different
UNVERIFIED = "unverified"  # in both, same size, no reliable way to compare contents
IN_FLIGHT = "in_flight"  # would be missing or different, but the source is young, no copy failed
KINDS = (MISSING, EXTRA, MISMATCHED, UNVERIFIED, IN_FLIGHT)
# Not a difference: yielded only when asked (``diff(..., in_sync=True)``, or for the keys a
# predicate chooses), for callers that record what a run established about objects in sync.
IN_SYNC = "in_sync"
# Not a difference either: an object the backup keeps as a guard release said ("keep the
# backup as it is"): its held delete or overwrite was not applied, and the source has not
# changed it since. Neither missing, mismatched nor extra; never repaired.
KEPT = "kept"


class Entry(NamedTuple):
    """One object as a listing shows it, key relative to its side's prefix."""

    key: str
    size: int
    etag: str  # without quotes; "<md5>-<parts>" for a multipart upload
    last_modified: datetime
    checksum: str | None = None  # "ALGORITHM:value" when known, e.g. "SHA256:q1w2..."


class Difference(NamedTuple):
    kind: str
    key: str
    source: Entry | None
    backup: Entry | None


class ListingOrderError(ValueError):
    """A listing was not in ascending UTF-8 byte order, so no merge of it can be trusted."""

    def __init__(self, side: str, previous: str, key: str):
        super().__init__(
            f"the {side} listing is out of order: {key!r} came after {previous!r}; "
            "the server does not list keys in UTF-8 byte order"
        )


@dataclass
class Tally:
    """Complete counts of one comparison (stored discrepancy rows may be capped; these never)."""

    source_objects: int = 0
    source_bytes: int = 0
    destination_objects: int = 0
    destination_bytes: int = 0
    in_sync: int = 0
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    unverified: int = 0
    in_flight: int = 0
    kept: int = 0
    # Objects the listing left unverified or mismatched that HEAD checksums settled (in sync,
    # or unverified proven mismatched); already counted under what they were settled as.
    checksum_settled: int = 0

    @property
    def scanned(self) -> int:
        return self.source_objects + self.destination_objects

    def add(self, other: "Tally") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Tally":
        return cls(**{f.name: int(data.get(f.name, 0)) for f in fields(cls)})


def is_multipart(etag: str) -> bool:
    return "-" in etag


def compare(source: Entry, backup: Entry) -> str | None:
    """None when both sides provably hold the same bytes, else MISMATCHED or UNVERIFIED."""
    if source.size != backup.size:
        return MISMATCHED
    if source.checksum and backup.checksum:
        source_algorithm = source.checksum.partition(":")[0]
        backup_algorithm = backup.checksum.partition(":")[0]
        # Composite checksums ("...-N") depend on part boundaries, like multipart ETags.
        if source_algorithm == backup_algorithm and not (
            is_multipart(source.checksum) or is_multipart(backup.checksum)
        ):
            return None if source.checksum == backup.checksum else MISMATCHED
    source_multipart, backup_multipart = is_multipart(source.etag), is_multipart(backup.etag)
    if not source_multipart and not backup_multipart:
        # Both are MD5s of the whole content.
        return None if source.etag == backup.etag else MISMATCHED
    if source_multipart and backup_multipart and source.etag == backup.etag:
        # Equal MD5s of equal part MD5s: the same bytes (the copy kept the part boundaries).
        return None
    # One side in parts and the other not, or different part boundaries: the ETags cannot
    # tell, and calling it a mismatch would flag every object re-uploaded in parts.
    return UNVERIFIED


def still_kept(kept_etag: str, kept_at: datetime, source: Entry | None, backup: Entry) -> bool:
    """Whether a key kept at a guard release still is: the backup holds the ETag it had then,
    and the source has not changed the key since (absent, or last modified by then)."""
    if backup.etag != kept_etag:
        return False
    return source is None or source.last_modified <= kept_at


def diff(
    source: Iterable[Entry],
    backup: Iterable[Entry],
    *,
    in_flight_after: datetime,
    tally: Tally | None = None,
    in_sync: bool | Callable[[str], bool] = False,
    copy_failed: Callable[[str], bool] | None = None,
    kept: Callable[[str, Entry | None, Entry], bool] | None = None,
) -> Iterator[Difference]:
    """Yield every difference between two listings sorted by key, counting all into ``tally``;
    with ``in_sync``, objects found in sync too (kind IN_SYNC), all in key order. A callable
    ``in_sync`` is asked about each in-sync key, in key order, and chooses which are yielded.

    Source objects modified after ``in_flight_after`` (now minus the pair's grace period)
    that are missing or differ are IN_FLIGHT: the copy may simply not have happened yet;
    unless ``copy_failed`` says their copy is known to have failed (an open failure), which
    makes them what they are, whatever their age. It is asked only about such young keys, in
    key order.

    ``kept`` is asked about each extra or differing object (key, source entry or None,
    backup entry), in key order, before the rules above: True makes it KEPT (the backup
    keeps it as a guard release said), counted ``kept`` and nothing else.
    """
    tally = tally if tally is not None else Tally()
    source_iter, backup_iter = iter(source), iter(backup)
    s = next(source_iter, None)
    b = next(backup_iter, None)
    previous_source = previous_backup = None
    wanted = (lambda key: in_sync) if isinstance(in_sync, bool) else in_sync

    while s is not None or b is not None:
        if s is not None and previous_source is not None and s.key <= previous_source:
            raise ListingOrderError("source", previous_source, s.key)
        if b is not None and previous_backup is not None and b.key <= previous_backup:
            raise ListingOrderError("backup", previous_backup, b.key)

        if b is None or (s is not None and s.key < b.key):
            tally.source_objects += 1
            tally.source_bytes += s.size
            if s.last_modified > in_flight_after and not (copy_failed and copy_failed(s.key)):
                tally.in_flight += 1
                yield Difference(IN_FLIGHT, s.key, s, None)
            else:
                tally.missing += 1
                yield Difference(MISSING, s.key, s, None)
            previous_source = s.key
            s = next(source_iter, None)
        elif s is None or b.key < s.key:
            tally.destination_objects += 1
            tally.destination_bytes += b.size
            if kept is not None and kept(b.key, None, b):
                tally.kept += 1
                yield Difference(KEPT, b.key, None, b)
            else:
                tally.extra += 1
                yield Difference(EXTRA, b.key, None, b)
            previous_backup = b.key
            b = next(backup_iter, None)
        else:
            tally.source_objects += 1
            tally.source_bytes += s.size
            tally.destination_objects += 1
            tally.destination_bytes += b.size
            # Equal sizes and ETags with no checksum to say otherwise: in sync (compare's
            # answer, without its call; this is most objects of most runs).
            same = s.size == b.size and s.etag == b.etag and s.checksum is None
            kind = None if same else compare(s, b)
            if kind is None:
                tally.in_sync += 1
                if in_sync is not False and wanted(s.key):
                    yield Difference(IN_SYNC, s.key, s, b)
            elif kept is not None and kept(s.key, s, b):
                tally.kept += 1
                yield Difference(KEPT, s.key, s, b)
            else:
                if s.last_modified > in_flight_after and not (copy_failed and copy_failed(s.key)):
                    kind = IN_FLIGHT
                setattr(tally, kind, getattr(tally, kind) + 1)
                yield Difference(kind, s.key, s, b)
            previous_source, previous_backup = s.key, b.key
            s = next(source_iter, None)
            b = next(backup_iter, None)

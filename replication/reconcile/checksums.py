"""A second opinion for differences the listing cannot settle: checksums from HEAD. Pure Python.

A listing gives each object's size and ETag but no checksum. ETags prove equal content only
when both are MD5s of the whole object; they are not when one side was uploaded in parts
(UNVERIFIED) or encrypted with SSE-KMS (whose ETags are not MD5s, so a same-size pair looks
MISMATCHED). HEAD with ``ChecksumMode=ENABLED`` returns the object's checksum and its type, and
S3 now gives new uploads a full-object CRC64NVME by default, so most such pairs can be decided.

What is comparable:

- FULL_OBJECT checksums of the same algorithm: a function of the bytes alone, whatever the
  part layout, so equal values mean equal content and different values different content.
- COMPOSITE checksums ("value-N"), a checksum of the parts' checksums, depend on the part
  boundaries like multipart ETags do. Equal values with the same algorithm and part count
  prove equal content; different values prove nothing, because the same bytes cut at other
  boundaries (same count, other sizes) give another value, and DESIGN.md forbids calling a
  mismatch only because of the part layout. They stay undecided.
- Anything else (one side without a checksum, different algorithms, a full-object checksum
  against a composite one) is undecided and keeps the listing's classification; except that
  a same-size "mismatch" whose ETags are not both MD5s (HEAD says SSE-KMS or SSE-C on either
  side: their ETags are no digest of the content) is only unverified, never mismatched. A
  listing does not say the encryption; HEAD's ServerSideEncryption and SSECustomerAlgorithm
  do, and a HEAD refused with 400 (what S3 answers for an SSE-C object asked without its key)
  is taken as SSE-C.

The I/O layer (replication/reconcile/verify.py) makes the HEADs; this module decides.
"""

import re
from collections.abc import Mapping
from typing import NamedTuple

from replication.reconcile.diff import (
    MISMATCHED,
    UNVERIFIED,
    Difference,
    Entry,
    Tally,
    is_multipart,
)

FULL_OBJECT = "FULL_OBJECT"
COMPOSITE = "COMPOSITE"
# The order HEAD's fields are looked at in; S3 returns at most one of them per object.
ALGORITHMS = ("CRC64NVME", "CRC32", "CRC32C", "SHA1", "SHA256")

# Encryptions whose ETags are not MD5s of the content (HEAD's ServerSideEncryption).
KMS_ENCRYPTIONS = ("aws:kms", "aws:kms:dsse")

# Verdicts of a second opinion (MISMATCHED and UNVERIFIED are diff's own).
IN_SYNC = "in_sync"
UNDECIDED = "undecided"

_PART_COUNT = re.compile(r"-(\d+)$")


class ObjectChecksum(NamedTuple):
    """What HEAD said about one object: which version it saw, and its checksum if any."""

    etag: str  # without quotes
    size: int
    algorithm: str | None = None  # one of ALGORITHMS
    value: str | None = None  # base64, with "-N" for a composite checksum on real S3
    type: str | None = None  # FULL_OBJECT, COMPOSITE, or None when it cannot be told
    # False for SSE-KMS and SSE-C objects, whose ETags are not MD5s of their content.
    etag_is_md5: bool = True

    @property
    def parts(self) -> int | None:
        """The part count of a composite checksum, from its suffix or else from the ETag's."""
        for text in (self.value or "", self.etag):
            match = _PART_COUNT.search(text)
            if match:
                return int(match.group(1))
        return None


def from_head(response: Mapping) -> ObjectChecksum:
    """The checksum fields of a boto3 ``head_object`` response made with ChecksumMode=ENABLED."""
    etag = str(response.get("ETag", "")).strip('"')
    size = int(response.get("ContentLength", -1))
    etag_is_md5 = not (
        response.get("ServerSideEncryption") in KMS_ENCRYPTIONS
        or response.get("SSECustomerAlgorithm")
    )
    for algorithm in ALGORITHMS:
        value = response.get(f"Checksum{algorithm}")
        if value:
            break
    else:
        return ObjectChecksum(etag, size, etag_is_md5=etag_is_md5)
    kind = response.get("ChecksumType")
    if kind is None:
        # Older objects and some servers omit the type. A "-N" suffix is composite; a single
        # PUT's checksum always covers the whole object. A multipart object's checksum
        # without either could be composite (moto's are, without the suffix): unknown.
        if _PART_COUNT.search(value):
            kind = COMPOSITE
        elif not is_multipart(etag):
            kind = FULL_OBJECT
    return ObjectChecksum(etag, size, algorithm, value, kind, etag_is_md5)


def compare_checksums(source: ObjectChecksum, backup: ObjectChecksum | None) -> str:
    """IN_SYNC, MISMATCHED or UNDECIDED, from the two sides' checksums alone."""
    if backup is None or source.algorithm is None or source.algorithm != backup.algorithm:
        return UNDECIDED
    if source.type == FULL_OBJECT and backup.type == FULL_OBJECT:
        return IN_SYNC if source.value == backup.value else MISMATCHED
    if (
        source.type == COMPOSITE
        and backup.type == COMPOSITE
        and source.parts is not None
        and source.parts == backup.parts
        and source.value == backup.value
    ):
        return IN_SYNC
    return UNDECIDED


def settle(
    difference: Difference, source: ObjectChecksum | None, backup: ObjectChecksum | None
) -> str:
    """The verdict on ``difference`` given each side's HEAD (None where the HEAD failed, or
    was spared because the source's answer decided already).

    A HEAD that saw another version than the listing (the object was overwritten meanwhile)
    says nothing about the listed one, whose sizes and ETags the counts are made of.
    """
    if source is None or not _same_version(difference.source, source):
        return UNDECIDED
    if backup is not None and not _same_version(difference.backup, backup):
        return UNDECIDED
    verdict = compare_checksums(source, backup)
    encrypted = not source.etag_is_md5 or (backup is not None and not backup.etag_is_md5)
    if verdict == UNDECIDED and difference.kind == MISMATCHED and encrypted:
        # Equal sizes, ETags that are no digests, no checksum to compare: unverified.
        return UNVERIFIED
    return verdict


def _same_version(listed: Entry | None, head: ObjectChecksum) -> bool:
    return listed is not None and listed.etag == head.etag and listed.size == head.size


def worth_checking(difference: Difference) -> bool:
    """Whether a checksum could change this difference's verdict.

    Unverified objects, and same-size mismatches (differing single-part ETags, which SSE-KMS
    gives equal contents). Different sizes need no second opinion; young objects stay in
    flight without costing a HEAD each while a backup catches up.
    """
    if difference.kind == UNVERIFIED:
        return True
    return (
        difference.kind == MISMATCHED
        and difference.source is not None
        and difference.backup is not None
        and difference.source.size == difference.backup.size
    )


def reclassify(difference: Difference, verdict: str, tally: Tally) -> Difference:
    """Apply ``verdict`` to a difference the merge already counted.

    Moves the object between the tally's counts, so they stay complete and exact. One
    proven in sync comes back as kind IN_SYNC: no discrepancy, but still a finding (it
    resolves the object's open failure, as any object found in sync does).
    """
    if verdict == UNDECIDED or verdict == difference.kind:
        return difference
    setattr(tally, difference.kind, getattr(tally, difference.kind) - 1)
    tally.checksum_settled += 1
    if verdict == IN_SYNC:
        tally.in_sync += 1
        return difference._replace(kind=IN_SYNC)
    setattr(tally, verdict, getattr(tally, verdict) + 1)
    return difference._replace(kind=verdict)


# How an in-flight object settled, once its grace had passed (replication/reconcile/settle.py).
SETTLED_IN_SYNC = "in_sync"
SETTLED_MISSING = "missing"
SETTLED_MISMATCHED = "mismatched"
SETTLED_UNVERIFIED = "unverified"
SETTLED_GONE = "gone"


def settled_as(
    listed_etag: str, source: ObjectChecksum | None, backup: ObjectChecksum | None
) -> str:
    """How an object listed in flight with ``listed_etag`` stands now, from HEADs of both
    sides (None: the object does not exist there).

    Gone when the source no longer holds the listed version (deleted, or overwritten: the
    next reconcile sees the new one); missing without a backup copy; else as the checksums,
    or failing them the ETags, can tell: in sync, mismatched, or unverified.
    """
    if source is None or source.etag != listed_etag:
        return SETTLED_GONE
    if backup is None:
        return SETTLED_MISSING
    if source.size != backup.size:
        return SETTLED_MISMATCHED
    by_checksum = compare_checksums(source, backup)
    if by_checksum == IN_SYNC:
        return SETTLED_IN_SYNC
    if by_checksum == MISMATCHED:
        return SETTLED_MISMATCHED
    if source.etag == backup.etag and source.etag_is_md5 and backup.etag_is_md5:
        return SETTLED_IN_SYNC  # equal MD5s (or equal part MD5s: same part boundaries)
    if (
        source.etag_is_md5
        and backup.etag_is_md5
        and not is_multipart(source.etag)
        and not is_multipart(backup.etag)
    ):
        return SETTLED_MISMATCHED  # both MD5s of the whole content, and they differ
    return SETTLED_UNVERIFIED

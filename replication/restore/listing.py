"""The backup's versions, page by page, in key order. I/O edge.

botocore returns a page's versions and delete markers in two lists, each in key order; they
are merged back into one, so a key's entries reach the plan together.
"""

import heapq
from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError

from replication.reconcile.listing import ListingError, Side, describe_error
from replication.reconcile.listxml import ListXMLError
from replication.restore.plan import RESERVED_PREFIX, Version
from replication.restore.versionxml import parse_versions_page

PAGE_SIZE = 1000  # S3's maximum


def list_versions(s3, side: Side, strip: int | None = None) -> Iterator[Version]:
    """Every version and delete marker under ``side``'s prefix, keys relative to it.

    The reserved prefix at the backup bucket's root is left out: drills and restores write
    there, and it is no part of any pair's backup.
    """
    params = {"Bucket": side.bucket, "Prefix": side.prefix, "MaxKeys": PAGE_SIZE}
    strip = len(side.prefix) if strip is None else strip
    try:
        while True:
            page = s3.list_object_versions(**params)
            lean = page.get("VersionsBody")
            if lean is not None:  # a client from replication.s3.listing_client
                parsed = parse_versions_page(lean, strip)
                entries = _unreserved(parsed.versions) if strip == 0 else parsed.versions
                yield from entries
                truncated = parsed.is_truncated
                next_key, next_version = parsed.next_key_marker, parsed.next_version_id_marker
            else:
                yield from _entries(page, strip, skip_reserved=strip == 0)
                truncated = page.get("IsTruncated")
                next_key, next_version = page.get("NextKeyMarker"), page.get("NextVersionIdMarker")
            if not truncated:
                return
            params["KeyMarker"] = next_key
            params["VersionIdMarker"] = next_version or ""
    except (ClientError, BotoCoreError) as exc:
        raise ListingError(describe_error(exc, side)) from exc
    except ListXMLError as exc:
        raise ListingError(f"unreadable version listing of {side.bucket!r}: {exc}") from exc


def _unreserved(versions: list[Version]) -> list[Version]:
    return [v for v in versions if not v.key.startswith(RESERVED_PREFIX)]


def _entries(page: dict, strip: int, *, skip_reserved: bool) -> Iterator[Version]:
    versions = (
        Version(
            v["Key"][strip:],
            v.get("VersionId") or "null",
            v["LastModified"],
            v.get("Size", 0),
            v.get("ETag", "").strip('"'),
            False,
            v.get("IsLatest", False),
        )
        for v in page.get("Versions", ())
    )
    markers = (
        Version(
            m["Key"][strip:],
            m.get("VersionId") or "null",
            m["LastModified"],
            0,
            "",
            True,
            m.get("IsLatest", False),
        )
        for m in page.get("DeleteMarkers", ())
    )
    for version in heapq.merge(versions, markers, key=lambda v: v.key):
        if skip_reserved and version.key.startswith(RESERVED_PREFIX):
            continue
        yield version


def versioning_enabled(s3, bucket: str) -> bool:
    """True when the bucket keeps versions (versioning enabled, or suspended after it was)."""
    try:
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except (ClientError, BotoCoreError) as exc:
        raise ListingError(describe_error(exc, Side("backup", bucket, ""))) from exc
    return status in ("Enabled", "Suspended")


def bucket_problem(s3, bucket: str) -> str:
    """Why ``bucket`` cannot be a restore's target (gone, denied); "" when it can be."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404") or status == 404:
            return f"the target bucket {bucket!r} does not exist"
        if code in ("AccessDenied", "403") or status == 403:
            return f"access denied to the target bucket {bucket!r}"
        return f"the target bucket {bucket!r} cannot be reached: {code}"
    except BotoCoreError as exc:
        return f"the target bucket {bucket!r} cannot be reached: {exc}"
    return ""

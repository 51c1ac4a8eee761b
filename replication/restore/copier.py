"""Copying one backup version to its restore target, and proving the copy. I/O edge.

The copies are the Lambda handler's own (replication/lambda_function.py), as repair's are:
one CopyObject for a single-part object, the source's own part boundaries for a multipart
one, so the restored object keeps its ETag, metadata and tags. The copy's response proves
it: the ETag it reports is the version's. Only when the two differ (a target bucket that
encrypts with KMS writes ETags that are not MD5s) are both sides' checksums read by HEAD.
"""

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from replication.lambda_function import (
    _copy_by_parts,
    _single_copy,
    describe_error,
    parts_in_etag,
    quote_etag,
)

_CHECKSUMS = (
    "ChecksumSHA256",
    "ChecksumSHA1",
    "ChecksumCRC32C",
    "ChecksumCRC32",
    "ChecksumCRC64NVME",
)


@dataclass
class Restored:
    """The outcome of restoring one version: ``ok`` with how it was proven, or the error."""

    ok: bool
    etag: str = ""  # the restored object's ETag, without quotes
    verified_by: str = ""  # "etag" (the copy's response) or "checksum" (HEAD of both sides)
    error_code: str = ""
    error: str = ""


def copy_version(
    s3,
    bucket: str,
    key: str,
    version_id: str | None,
    etag: str,
    target_bucket: str,
    target_key: str,
) -> Restored:
    """Copy ``bucket/key`` at ``version_id`` (the current one when None) to the target.

    Never raises for an S3 error: it comes back as a failed outcome with the AWS code.
    """
    source = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        source["VersionId"] = version_id
    try:
        if parts_in_etag(etag):
            head = s3.head_object(**source)
            copied = _copy_by_parts(s3, source, head, target_bucket, target_key, None)
        else:
            result = _single_copy(s3, source, target_bucket, target_key, quote_etag(etag), None)
            copied = result["CopyObjectResult"]["ETag"]
    except (ClientError, BotoCoreError) as exc:
        code, message = describe_error(exc)
        return Restored(False, error_code=code, error=message)
    copied = copied.strip('"')
    if copied == etag:
        return Restored(True, copied, "etag")
    return _prove_by_checksum(s3, source, target_bucket, target_key, copied, etag)


def _prove_by_checksum(s3, source: dict, target_bucket: str, target_key: str, copied, etag):
    try:
        original = s3.head_object(**source, ChecksumMode="ENABLED")
        restored = s3.head_object(Bucket=target_bucket, Key=target_key, ChecksumMode="ENABLED")
    except (ClientError, BotoCoreError) as exc:
        code, message = describe_error(exc)
        return Restored(False, copied, error_code=code, error=message)
    for name in _CHECKSUMS:
        if original.get(name) and restored.get(name):
            if original[name] == restored[name] and (
                original.get("ContentLength") == restored.get("ContentLength")
            ):
                return Restored(True, copied, "checksum")
            break
    return Restored(
        False,
        copied,
        error_code="Unverified",
        error=(
            f"unverified: the copy's ETag {copied} is not the version's {etag}, and no "
            "checksum on both sides proves the bytes equal"
        ),
    )


def target_holds(s3, target_bucket: str, target_key: str, etag: str) -> bool:
    """True when the target already holds an object with ``etag``: a copy whose outcome a
    dead worker never recorded (HEAD, on resume only)."""
    try:
        head = s3.head_object(Bucket=target_bucket, Key=target_key)
    except (ClientError, BotoCoreError):
        return False
    return head.get("ETag", "").strip('"') == etag

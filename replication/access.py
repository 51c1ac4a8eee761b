"""The admin's "Check access": can the product and the Lambda do their work on a pair?

Each check becomes a Finding (a level and a sentence) so the admin shows messages, never a
traceback. ``describe_error`` turns boto3's exceptions into those sentences.
"""

import uuid
from dataclasses import dataclass
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str


_MISSING = {"NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId"}


def describe_error(exc: Exception, bucket: str) -> str:
    """One sentence for an operator, naming the bucket and the AWS error code."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING:
            return f"bucket {bucket!r} does not exist"
        if code in _DENIED:
            return f"access to bucket {bucket!r} is denied ({code})"
        if code in {"PermanentRedirect", "301", "AuthorizationHeaderMalformed"}:
            return f"bucket {bucket!r} is in another region than the pair says ({code})"
        message = exc.response.get("Error", {}).get("Message", "")
        return f"bucket {bucket!r}: {code} {message}".strip()
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the S3 endpoint for bucket {bucket!r}: {exc}"
    if isinstance(exc, BotoCoreError):
        return f"bucket {bucket!r}: {exc}"
    raise exc


def _attempt(findings: list[Finding], bucket: str, what: str, call) -> bool:
    try:
        call()
    except (ClientError, BotoCoreError) as exc:
        findings.append(Finding(Level.ERROR, f"{what}: {describe_error(exc, bucket)}."))
        return False
    return True


def check_pair(pair, s3) -> list[Finding]:
    """Check both buckets of ``pair`` with the S3 client ``s3``."""
    findings: list[Finding] = []
    _check_source(pair, s3, findings)
    _check_backup(pair, s3, findings)
    return findings


def _check_source(pair, s3, findings: list[Finding]) -> None:
    bucket = pair.source_bucket
    if not _check_listing(s3, "Source", bucket, pair.source_prefix, findings):
        return
    _check_versioning(s3, bucket, "Source", findings)
    try:
        notifications = s3.get_bucket_notification_configuration(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        findings.append(
            Finding(Level.WARNING, f"Source notifications unknown: {describe_error(exc, bucket)}.")
        )
        return
    targets = [
        key
        for key in (
            "LambdaFunctionConfigurations",
            "QueueConfigurations",
            "TopicConfigurations",
            "EventBridgeConfiguration",
        )
        if key in notifications
    ]
    if targets:
        findings.append(
            Finding(Level.OK, f"Source sends event notifications ({', '.join(targets)}).")
        )
    else:
        findings.append(
            Finding(
                Level.WARNING,
                f"Source {bucket!r} sends no event notifications: the Lambda is never called "
                "and only reconciles will copy anything.",
            )
        )


def _check_backup(pair, s3, findings: list[Finding]) -> None:
    bucket, prefix = pair.backup_bucket, pair.backup_prefix
    if not _check_listing(s3, "Backup", bucket, prefix, findings):
        return
    # A zero-byte probe, removed at once, is the only honest test of write permission.
    probe = f"{prefix}.backupsite-access-check-{uuid.uuid4().hex}"
    if _attempt(
        findings,
        bucket,
        "Backup is not writable",
        lambda: s3.put_object(Bucket=bucket, Key=probe, Body=b""),
    ):
        findings.append(Finding(Level.OK, f"Backup {bucket!r} is writable."))
        _attempt(
            findings,
            bucket,
            f"Probe object {probe!r} could not be removed",
            lambda: s3.delete_object(Bucket=bucket, Key=probe),
        )
    _check_versioning(s3, bucket, "Backup", findings)


def _check_listing(s3, side: str, bucket: str, prefix: str, findings: list[Finding]) -> bool:
    """Does the bucket exist (False ends the side's checks), and can its prefix be listed?"""
    if not _attempt(findings, bucket, side, lambda: s3.head_bucket(Bucket=bucket)):
        return False
    if _attempt(
        findings,
        bucket,
        f"{side} is not readable",
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1),
    ):
        findings.append(Finding(Level.OK, f"{side} {bucket!r} exists and can be listed."))
    return True


def _check_versioning(s3, bucket: str, side: str, findings: list[Finding]) -> None:
    try:
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "")
    except (ClientError, BotoCoreError) as exc:
        findings.append(
            Finding(Level.WARNING, f"{side} versioning unknown: {describe_error(exc, bucket)}.")
        )
        return
    if status == "Enabled":
        findings.append(Finding(Level.OK, f"{side} {bucket!r} has versioning enabled."))
    elif side == "Backup":
        findings.append(
            Finding(
                Level.WARNING,
                f"Backup {bucket!r} versioning is {status.lower() or 'off'}: an overwrite or "
                "delete in the backup cannot be undone.",
            )
        )
    else:
        findings.append(
            Finding(
                Level.WARNING,
                f"Source {bucket!r} versioning is {status.lower() or 'off'}: copies cannot pin "
                "the exact version an event announced.",
            )
        )

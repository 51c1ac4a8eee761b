"""The replicator: copy every object written to a source bucket into its backup, and report it.

This file deploys alone as an AWS Lambda function, so it imports only the standard library,
boto3 and botocore (the Lambda Python runtime ships both) and nothing of the project. The
reconcile engine's repair mode imports ``copy_object`` and ``mirror_delete`` from here, so
the event path and the repair path copy the same way.

Reading order:
  1. configuration        Config, Route, load_config                      (pure)
  2. events               parse_event, decode_notification_key, action_for (pure)
  3. keys and errors      backup_key, error_class, describe_error         (pure)
  4. copy and delete      CopyOutcome, copy_object, mirror_delete         (S3 I/O)
  5. the report           report_entry, sign, send_report                 (HTTP I/O)
  6. the handler          lambda_handler, handle
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("backupsite.replicator")
# Lambda's runtime routes the root logger to CloudWatch; our per-record lines are INFO.
log.setLevel(logging.INFO)


# --------------------------------------------------------------------------------------------
# 1. Configuration (pure)
# --------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """The function's environment is wrong; every invocation fails until it is fixed."""


@dataclass(frozen=True)
class Route:
    """Where one source bucket's objects go. Keys are compared after removing each prefix."""

    destination_bucket: str
    destination_prefix: str = ""
    source_prefix: str = ""


@dataclass(frozen=True)
class Config:
    routes: Mapping[str, Route]  # source bucket -> route (from REPLICATION_MAP)
    default_route: Route | None  # any source bucket (from DESTINATION_BUCKET)
    storage_class: str | None = None
    mirror_deletes: bool = False
    report_url: str = ""
    report_key_id: str = ""
    report_secret: str = field(default="", repr=False)
    guard_url: str = ""  # where the destructive-change guard's holds are read ("": nowhere)
    max_copy_bytes: int = 0  # larger multipart sources are reported failed (0: no limit)

    def route_for(self, source_bucket: str) -> Route | None:
        return self.routes.get(source_bucket, self.default_route)

    @property
    def backup_buckets(self) -> frozenset[str]:
        buckets = {route.destination_bucket for route in self.routes.values()}
        if self.default_route:
            buckets.add(self.default_route.destination_bucket)
        return frozenset(buckets)


# The largest object the function copies. A function killed at Lambda's 15-minute limit
# cannot abort its multipart upload, so larger objects are refused up front and left to a
# reconcile's repair, which runs on a worker without that limit. docs/lambda.md gives the
# reasoning behind the figure; MAX_COPY_GIB changes it.
DEFAULT_MAX_COPY_BYTES = 50 * 1024**3

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def parse_bool(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    # A typo such as MIRROR_DELETES=ture must not silently mean "keep" or "delete".
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def load_config(environ: Mapping[str, str]) -> Config:
    """Read the function's configuration; raise ConfigError naming the variable at fault."""
    destination = environ.get("DESTINATION_BUCKET", "").strip()
    raw_map = environ.get("REPLICATION_MAP", "").strip()
    if destination and raw_map:
        raise ConfigError("set DESTINATION_BUCKET or REPLICATION_MAP, not both")
    if not destination and not raw_map:
        raise ConfigError("set DESTINATION_BUCKET (or REPLICATION_MAP for several pairs)")

    default_route = None
    routes: dict[str, Route] = {}
    if destination:
        default_route = Route(
            destination_bucket=destination,
            destination_prefix=environ.get("DESTINATION_PREFIX", ""),
            source_prefix=environ.get("SOURCE_PREFIX", ""),
        )
    else:
        routes = _parse_replication_map(raw_map, environ.get("DESTINATION_PREFIX", ""))

    for source, route in routes.items():
        if source == route.destination_bucket:
            raise ConfigError(
                f"REPLICATION_MAP: {source!r} is mapped to itself; "
                "a backup must live in another bucket"
            )
    report_url = environ.get("REPORT_URL", "").strip()
    key_id = environ.get("REPORT_KEY_ID", "").strip()
    secret = environ.get("REPORT_SECRET", "")
    if report_url and urllib.parse.urlsplit(report_url).scheme not in ("http", "https"):
        raise ConfigError(f"REPORT_URL must be an http(s) URL, not {report_url!r}")
    if report_url and not (key_id and secret):
        raise ConfigError("REPORT_URL is set: REPORT_KEY_ID and REPORT_SECRET are needed too")
    guard_url = environ.get("GUARD_URL", "").strip() or default_guard_url(report_url)
    if guard_url and urllib.parse.urlsplit(guard_url).scheme not in ("http", "https"):
        raise ConfigError(f"GUARD_URL must be an http(s) URL, not {guard_url!r}")
    raw_max = environ.get("MAX_COPY_GIB", "").strip()
    try:
        max_copy_bytes = int(float(raw_max) * 1024**3) if raw_max else DEFAULT_MAX_COPY_BYTES
    except ValueError:
        raise ConfigError(f"MAX_COPY_GIB must be a number of GiB, not {raw_max!r}") from None
    if max_copy_bytes < 0:
        raise ConfigError(f"MAX_COPY_GIB must not be negative, not {raw_max!r}")
    return Config(
        max_copy_bytes=max_copy_bytes,
        routes=routes,
        default_route=default_route,
        storage_class=environ.get("DESTINATION_STORAGE_CLASS", "").strip() or None,
        mirror_deletes=parse_bool("MIRROR_DELETES", environ.get("MIRROR_DELETES")),
        report_url=report_url,
        report_key_id=key_id,
        report_secret=secret,
        guard_url=guard_url if report_url else "",
    )


def default_guard_url(report_url: str) -> str:
    """REPORT_URL with its last path segment ``events`` replaced by ``guard``."""
    parts = urllib.parse.urlsplit(report_url)
    head, _, last = parts.path.rstrip("/").rpartition("/")
    if last != "events":
        return ""
    return urllib.parse.urlunsplit(parts._replace(path=f"{head}/guard", query=""))


def _parse_replication_map(raw: str, default_prefix: str) -> dict[str, Route]:
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise ConfigError(f"REPLICATION_MAP is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not document:
        raise ConfigError("REPLICATION_MAP must be a non-empty JSON object")
    routes = {}
    for source, target in document.items():
        if isinstance(target, str):
            target = {"bucket": target}
        if not isinstance(target, dict) or not isinstance(target.get("bucket"), str):
            raise ConfigError(
                f"REPLICATION_MAP[{source!r}] must be a bucket name or an object with 'bucket'"
            )
        unknown = set(target) - {"bucket", "prefix", "source_prefix"}
        if unknown:
            raise ConfigError(f"REPLICATION_MAP[{source!r}] has unknown fields {sorted(unknown)}")
        routes[source] = Route(
            destination_bucket=target["bucket"],
            destination_prefix=str(target.get("prefix", default_prefix)),
            source_prefix=str(target.get("source_prefix", "")),
        )
    return routes


# --------------------------------------------------------------------------------------------
# 2. Events (pure): every shape AWS delivers, flattened into ObjectEvents
# --------------------------------------------------------------------------------------------


class UnrecognizedEvent(ValueError):
    """The invocation is not any shape S3, SQS, SNS or EventBridge sends."""


@dataclass(frozen=True)
class ObjectEvent:
    """One change to one object, whatever envelope it came in. ``key`` is decoded."""

    bucket: str
    key: str
    event_name: str  # S3 notification naming: "ObjectCreated:Put", "ObjectRemoved:Delete"
    event_time: str
    sequencer: str = ""
    version_id: str = ""
    size: int | None = None
    etag: str = ""  # unquoted, as S3 notifications carry it
    message_id: str | None = None  # the SQS message it came in, for partial batch failures
    attempt: int = 1
    # EventBridge only: the key as delivered, when decoding changed it (see _from_eventbridge).
    delivered_key: str = ""


@dataclass(frozen=True)
class BadMessage:
    """An SQS message whose body could not be read; it is handed back to SQS to retry."""

    message_id: str
    reason: str


@dataclass
class ParsedEvent:
    records: list[ObjectEvent] = field(default_factory=list)
    bad_messages: list[BadMessage] = field(default_factory=list)
    from_sqs: bool = False


def decode_notification_key(raw: str) -> str:
    """Decode a key as S3 notifications encode it: form encoding, a space is "+".

    So "a+b%2Bc" is "a b+c". Decoding is strict: S3 encodes UTF-8, and a key that does not
    decode must fail loudly rather than be copied under a mangled name.
    """
    return urllib.parse.unquote_plus(raw, encoding="utf-8", errors="strict")


def parse_event(event: Any) -> ParsedEvent:
    """Flatten an invocation into ObjectEvents. Raises UnrecognizedEvent for unknown shapes."""
    if not isinstance(event, dict):
        raise UnrecognizedEvent(f"expected a JSON object, got {type(event).__name__}")
    parsed = ParsedEvent()
    records = event.get("Records")
    if isinstance(records, list) and records and _source_of(records[0]) == "aws:sqs":
        parsed.from_sqs = True
        for message in records:
            _read_sqs_message(message, parsed)
        return parsed
    try:
        parsed.records = _read_payload(event, message_id=None, attempt=1)
    except UnrecognizedEvent:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        # A field AWS always sends is missing or of the wrong type: say which.
        raise UnrecognizedEvent(f"malformed event ({type(error).__name__}: {error})") from error
    return parsed


def _source_of(record: Any) -> str:
    if not isinstance(record, dict):
        return ""
    # S3 and SQS spell it eventSource; SNS spells it EventSource.
    return record.get("eventSource") or record.get("EventSource") or ""


def _read_sqs_message(message: dict, parsed: ParsedEvent) -> None:
    message_id = message.get("messageId", "")
    try:
        attempt = int(message.get("attributes", {}).get("ApproximateReceiveCount", 1))
        payload = json.loads(message.get("body") or "")
        parsed.records.extend(_read_payload(payload, message_id=message_id, attempt=attempt))
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        # One unreadable message must not cost the good ones: it alone goes back to SQS.
        parsed.bad_messages.append(BadMessage(message_id, f"{type(error).__name__}: {error}"))


def _read_payload(payload: Any, *, message_id: str | None, attempt: int) -> list[ObjectEvent]:
    """Events from one S3 notification, SNS message, or EventBridge event."""
    if not isinstance(payload, dict):
        raise UnrecognizedEvent("a message body must be a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        # Sent once when notifications are configured: nothing to copy.
        return []
    if payload.get("Type") == "Notification" and "Message" in payload:
        # SNS envelope inside an SQS body: the S3 notification is a JSON string within.
        return _read_payload(json.loads(payload["Message"]), message_id=message_id, attempt=attempt)
    if payload.get("source") == "aws.s3" and "detail-type" in payload:
        return [_from_eventbridge(payload, message_id=message_id, attempt=attempt)]
    records = payload.get("Records")
    if isinstance(records, list):
        events = []
        for record in records:
            source = _source_of(record)
            if source == "aws:s3":
                events.append(_from_s3_record(record, message_id=message_id, attempt=attempt))
            elif source == "aws:sns":
                inner = json.loads(record["Sns"]["Message"])
                events.extend(_read_payload(inner, message_id=message_id, attempt=attempt))
            else:
                raise UnrecognizedEvent(f"record from {source or 'an unknown source'!r}")
        return events
    raise UnrecognizedEvent("not an S3 notification, SNS message or EventBridge event")


def _from_s3_record(record: dict, *, message_id: str | None, attempt: int) -> ObjectEvent:
    s3 = record["s3"]
    obj = s3["object"]
    return ObjectEvent(
        bucket=s3["bucket"]["name"],
        key=decode_notification_key(obj["key"]),
        # Notifications say "ObjectCreated:Put"; a few emulators prefix "s3:".
        event_name=record["eventName"].removeprefix("s3:"),
        event_time=record.get("eventTime", ""),
        sequencer=obj.get("sequencer", ""),
        version_id=obj.get("versionId") or "",
        size=obj.get("size"),
        etag=(obj.get("eTag") or "").strip('"'),
        message_id=message_id,
        attempt=attempt,
    )


# EventBridge names the operation in detail.reason; map it to the notification event name.
_EVENTBRIDGE_CREATED = {
    "PutObject": "ObjectCreated:Put",
    "POST Object": "ObjectCreated:Post",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
}


def _eventbridge_event_name(detail_type: str, detail: dict) -> str:
    reason = detail.get("reason", "")
    if detail_type == "Object Created":
        return _EVENTBRIDGE_CREATED.get(reason, f"ObjectCreated:{reason or 'Unknown'}")
    if detail_type == "Object Deleted":
        marker = detail.get("deletion-type") == "Delete Marker Created"
        if reason == "Lifecycle Expiration":
            return "LifecycleExpiration:" + ("DeleteMarkerCreated" if marker else "Delete")
        return "ObjectRemoved:" + ("DeleteMarkerCreated" if marker else "Delete")
    # "Object Restore Completed", "Object Tags Added", ...: kept recognisable, then ignored.
    return "EventBridge:" + detail_type.replace(" ", "")


def _from_eventbridge(event: dict, *, message_id: str | None, attempt: int) -> ObjectEvent:
    detail = event["detail"]
    obj = detail["object"]
    delivered = obj["key"]
    # AWS's own Lambda library (Powertools, S3EventBridgeNotificationObject.key) decodes
    # EventBridge keys exactly like notification keys, so we do too. Should a key arrive
    # unencoded after all, resolve_delivered_key falls back to it when only it exists.
    try:
        key = decode_notification_key(delivered)
    except UnicodeDecodeError:
        key = delivered  # not valid form encoding, so it can only be the key itself
    return ObjectEvent(
        bucket=detail["bucket"]["name"],
        key=key,
        delivered_key=delivered if delivered != key else "",
        event_name=_eventbridge_event_name(event["detail-type"], detail),
        event_time=event.get("time", ""),
        sequencer=obj.get("sequencer", ""),
        version_id=obj.get("version-id") or "",
        size=obj.get("size"),
        etag=(obj.get("etag") or "").strip('"'),
        message_id=message_id,
        attempt=attempt,
    )


COPY, DELETE, IGNORE = "copy", "delete", "ignore"


def action_for(event_name: str) -> str:
    """What an event asks of the backup: copy, delete, or nothing."""
    if event_name.startswith("ObjectCreated:"):
        return COPY
    if event_name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        # A lifecycle expiration removes the source object just as a delete does.
        return DELETE
    # Transitions, restores, tagging, ACLs, replication, lost RRS objects: no new content.
    return IGNORE


# --------------------------------------------------------------------------------------------
# 3. Keys and errors (pure)
# --------------------------------------------------------------------------------------------


def backup_key(route: Route, source_key: str) -> str | None:
    """The backup's key for ``source_key``, or None when the key is outside the pair."""
    if not source_key.startswith(route.source_prefix):
        return None
    return route.destination_prefix + source_key[len(route.source_prefix) :]


def quote_etag(etag: str) -> str:
    """An ETag as S3's headers carry it: in double quotes (notifications leave them off)."""
    return '"' + etag.strip('"') + '"'


_MULTIPART_ETAG = re.compile(r'^"?[0-9a-fA-F]+-(\d+)"?$')


def parts_in_etag(etag: str) -> int:
    """How many parts a multipart upload had, from its ETag ("<md5>-<parts>"); 0 if single."""
    match = _MULTIPART_ETAG.match(etag or "")
    return int(match.group(1)) if match else 0


_ACCESS_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}
_THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "RequestThrottled",
}
# HEAD answers carry no body, so botocore's "code" is the bare HTTP status.
_STATUS_CODES = {
    "400": "BadRequest",
    "403": "AccessDenied",
    "404": "NoSuchKey",
    "412": "PreconditionFailed",
    "500": "InternalError",
    "503": "ServiceUnavailable",
}


def error_class(code: str, message: str = "") -> str:
    """A coarse class for an AWS error code, used to prefix the reported message."""
    if code.startswith("KMS") or (code in _ACCESS_CODES and "kms" in message.lower()):
        return "kms"
    if code in _ACCESS_CODES:
        return "access denied"
    if code in ("NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NoSuchUpload"):
        return "not found"
    if code in _THROTTLE_CODES:
        return "throttled"
    if "Timeout" in code:
        return "timeout"
    if code in ("EndpointConnectionError", "ConnectionClosedError", "ConnectionError"):
        return "connection"
    if code == "PreconditionFailed":
        return "superseded"
    return "error"


def describe_error(error: Exception) -> tuple[str, str]:
    """(error_code, error_message) for a boto error: the AWS code and a classified message."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        raw = str(info.get("Code", "Unknown"))
        code = _STATUS_CODES.get(raw, raw)
        message = info.get("Message") or str(error)
        operation = getattr(error, "operation_name", "")
        detail = f"{message} ({operation})" if operation else message
    else:
        # Timeouts and connection failures: botocore's exception name is the clearest code.
        code = type(error).__name__
        detail = str(error)
    return code, f"{error_class(code, detail)}: {detail}"


# --------------------------------------------------------------------------------------------
# 4. Copy and delete (S3 I/O)
# --------------------------------------------------------------------------------------------

COPIED, DELETED, SKIPPED, FAILED = "copied", "deleted", "skipped", "failed"
# A delete or overwrite the destructive-change guard kept from the backup: not a failure.
HELD = "held"

# Headers that travel with an object's content; a copy made part by part must set them itself.
_CONTENT_HEADERS = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "WebsiteRedirectLocation",
)
_PART_COPY_THREADS = 8


@dataclass
class CopyOutcome:
    """The result of copying (or deleting) one backup object.

    ``status`` is "copied" | "skipped" | "failed" for a copy, "deleted" | "skipped" | "failed"
    for a delete. ``etag`` is the backup's ETag after the copy, quoted as S3 returns it.
    """

    status: str
    size: int | None = None
    etag: str | None = None
    error_code: str = ""
    error_message: str = ""


def _failed(error: Exception) -> CopyOutcome:
    code, message = describe_error(error)
    return CopyOutcome(FAILED, error_code=code, error_message=message)


def _skipped(reason: str, size: int | None = None) -> CopyOutcome:
    return CopyOutcome(SKIPPED, size=size, error_message=reason)


def make_s3_client():
    """The client the handler uses: standard retries back off on SlowDown and timeouts."""
    config = botocore.config.Config(
        connect_timeout=5,
        # CopyObject of a large object holds the connection while S3 copies.
        read_timeout=120,
        # botocore's max_attempts counts retries: six attempts in all, with jittered backoff.
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=_PART_COPY_THREADS * 2,
    )
    return boto3.client("s3", config=config)


def copy_object(
    s3,
    source_bucket: str,
    source_key: str,
    dest_bucket: str,
    dest_key: str,
    *,
    version_id: str | None = None,
    expected_etag: str | None = None,
    storage_class: str | None = None,
    max_bytes: int = 0,
) -> CopyOutcome:
    """Copy one object server-side so that the backup keeps the source's ETag.

    A multipart source larger than ``max_bytes`` (when not 0) is not copied: "failed", with
    the reason, because it could not finish within Lambda's time limit.

    ``expected_etag`` is the content the caller means to copy (the event's ETag, quoted or
    not); when the source no longer has it, the outcome is "skipped" (superseded).
    ``version_id`` is the version the caller means to copy; when a newer version has become
    current, the outcome is "skipped" too, so an old event never leaves older content in the
    backup than a newer one did. AWS errors never raise: they come back as "failed" with the
    AWS error code. ``size`` is None when the copy never needed to read the source's headers.
    """
    if expected_etag and not parts_in_etag(expected_etag):
        return _copy_announced_object(
            s3,
            {"Bucket": source_bucket, "Key": source_key},
            dest_bucket,
            dest_key,
            etag=quote_etag(expected_etag),
            version_id=version_id,
            storage_class=storage_class,
        )
    return _copy_after_head(
        s3,
        {"Bucket": source_bucket, "Key": source_key},
        dest_bucket,
        dest_key,
        etag=quote_etag(expected_etag) if expected_etag else None,
        version_id=version_id,
        storage_class=storage_class,
        max_bytes=max_bytes,
    )


def _single_copy(s3, source: dict, dest_bucket: str, dest_key: str, etag: str, storage_class):
    """One CopyObject keeping metadata, headers and tags; S3 refuses it if the ETag moved on."""
    extra = {"StorageClass": storage_class} if storage_class else {}
    return s3.copy_object(
        Bucket=dest_bucket,
        Key=dest_key,
        CopySource=source,
        CopySourceIfMatch=etag,
        MetadataDirective="COPY",
        TaggingDirective="COPY",
        **extra,
    )


def _copy_announced_object(
    s3, source: dict, dest_bucket: str, dest_key: str, *, etag: str, version_id, storage_class
) -> CopyOutcome:
    """The common case, an event announcing a single-part object: one request when all is well.

    The key's current version is copied, guarded by CopySourceIfMatch, and the response says
    which content and version were copied. moto ignores CopySourceIfMatch, so a changed ETag
    is caught after the copy; what was written then is the source's current content, never
    older content than a newer event already copied.
    """
    try:
        result = _single_copy(s3, source, dest_bucket, dest_key, etag, storage_class)
    except ClientError as error:
        return _source_unavailable(s3, source["Bucket"], error, expecting=True)
    except BotoCoreError as error:
        return _failed(error)
    if version_id and result.get("CopySourceVersionId", "null") != version_id:
        return _skipped("superseded: a newer version of the key was written after the event")
    backup_etag = result["CopyObjectResult"]["ETag"]
    if backup_etag != etag:
        # Either the source changed (and S3 ignored CopySourceIfMatch, as moto does), or the
        # backup bucket encrypts with KMS, whose ETags are not MD5s. The source can tell.
        try:
            s3.head_object(**source, IfMatch=etag)
        except ClientError as error:
            return _source_unavailable(s3, source["Bucket"], error, expecting=True)
        except BotoCoreError as error:
            return _failed(error)
    return CopyOutcome(COPIED, etag=backup_etag)


def _copy_after_head(
    s3,
    source: dict,
    dest_bucket: str,
    dest_key: str,
    *,
    etag: str | None,
    version_id,
    storage_class,
    max_bytes: int = 0,
) -> CopyOutcome:
    """Read the source's headers first: multipart sources, and copies without an ETag."""
    guard = {"IfMatch": etag} if etag else {}
    try:
        head = s3.head_object(**source, **guard)
    except ClientError as error:
        return _source_unavailable(s3, source["Bucket"], error, expecting=bool(etag or version_id))
    except BotoCoreError as error:
        return _failed(error)

    size = head.get("ContentLength")
    if version_id and head.get("VersionId", "null") != version_id:
        return _skipped("superseded: a newer version of the key was written after the event", size)
    if max_bytes and size is not None and size > max_bytes:
        return CopyOutcome(
            FAILED,
            size=size,
            error_code="ObjectTooLarge",
            error_message=(
                f"too large: {size} bytes is more than the {max_bytes} bytes (MAX_COPY_GIB) this "
                "function copies within Lambda's 15-minute limit; repair it with a reconcile"
            ),
        )
    if version_id:
        source = {**source, "VersionId": version_id}
    try:
        if parts_in_etag(head["ETag"]):
            backup_etag = _copy_by_parts(s3, source, head, dest_bucket, dest_key, storage_class)
        else:
            result = _single_copy(s3, source, dest_bucket, dest_key, head["ETag"], storage_class)
            backup_etag = result["CopyObjectResult"]["ETag"]
    except ClientError as error:
        code = describe_error(error)[0]
        if code == "PreconditionFailed" or (
            code in _REFUSED_FOR_ITS_RANGE and _source_changed(s3, source, head["ETag"])
        ):
            return _skipped("superseded: the source changed while it was being copied", size)
        return _failed(error)
    except BotoCoreError as error:
        return _failed(error)
    return CopyOutcome(COPIED, size=size, etag=backup_etag)


# A part copy whose byte range lies past the end of a source overwritten by a shorter object
# is refused for its range before CopySourceIfMatch is looked at (LocalStack does; S3's order
# is not documented): only then is the source asked again.
_REFUSED_FOR_ITS_RANGE = ("InvalidArgument", "InvalidRange")


def _source_changed(s3, source: dict, etag: str) -> bool:
    """True when the source no longer holds the content whose ETag the copy started from."""
    if "VersionId" in source:
        return False  # a version never changes
    try:
        s3.head_object(**source, IfMatch=etag)
    except ClientError as error:
        return describe_error(error)[0] in ("PreconditionFailed", "NoSuchKey")
    except BotoCoreError:
        return False
    return False


def _source_unavailable(s3, bucket: str, error: ClientError, *, expecting: bool) -> CopyOutcome:
    code, _ = describe_error(error)
    if code == "PreconditionFailed":
        return _skipped("superseded: the source's ETag changed after the event")
    if code == "NoSuchKey":
        # A HEAD's 404 does not say whether the key or the whole bucket is missing.
        if _bucket_missing(s3, bucket):
            return CopyOutcome(
                FAILED,
                error_code="NoSuchBucket",
                error_message=f"not found: source bucket {bucket!r} does not exist",
            )
        if expecting:
            # Deleted after the event: the delete's own event brings the news.
            return _skipped("superseded: the source key was deleted after the event")
    return _failed(error)


def _bucket_missing(s3, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        return describe_error(error)[0] in ("NoSuchKey", "NoSuchBucket")
    except BotoCoreError:
        return False
    return False


def _copy_by_parts(
    s3, source: dict, head: dict, dest_bucket: str, dest_key: str, storage_class: str | None
) -> str:
    """Copy a multipart source with its own part boundaries, so the ETag comes out identical.

    Any failure aborts the upload: an incomplete multipart upload is invisible but billed.
    """
    etag = head["ETag"]
    count = parts_in_etag(etag)

    def part_length(number: int) -> int:
        # No IfMatch here: moto compares it with the part's own ETag and answers 412. The
        # whole-object check before completing covers a source changed in the meantime.
        return s3.head_object(**source, PartNumber=number)["ContentLength"]

    with ThreadPoolExecutor(max_workers=min(_PART_COPY_THREADS, count)) as pool:
        lengths = list(pool.map(part_length, range(1, count + 1)))
    tags = s3.get_object_tagging(**source).get("TagSet", [])
    create = {name: head[name] for name in _CONTENT_HEADERS if head.get(name)}
    if tags:
        create["Tagging"] = urllib.parse.urlencode([(t["Key"], t["Value"]) for t in tags])
    if storage_class:
        create["StorageClass"] = storage_class
    upload = s3.create_multipart_upload(
        Bucket=dest_bucket, Key=dest_key, Metadata=head.get("Metadata", {}), **create
    )
    upload_id = upload["UploadId"]
    try:
        ranges = []
        start = 0
        for number, length in enumerate(lengths, start=1):
            ranges.append((number, f"bytes={start}-{start + length - 1}"))
            start += length

        def copy_part(part: tuple[int, str]) -> dict:
            number, byte_range = part
            result = s3.upload_part_copy(
                Bucket=dest_bucket,
                Key=dest_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=byte_range,
                CopySourceIfMatch=etag,
            )
            return {"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]}

        with ThreadPoolExecutor(max_workers=min(_PART_COPY_THREADS, count)) as pool:
            parts = list(pool.map(copy_part, ranges))
        # moto ignores CopySourceIfMatch: before committing, make sure the parts all came
        # from the object we set out to copy.
        s3.head_object(**source, IfMatch=etag)
        done = s3.complete_multipart_upload(
            Bucket=dest_bucket, Key=dest_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        _abort_upload(s3, dest_bucket, dest_key, upload_id)
        raise
    return done["ETag"]


def _abort_upload(s3, bucket: str, key: str, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except (ClientError, BotoCoreError) as error:
        # The original failure is what the report must show; this one goes to the log.
        log.error(
            json.dumps(
                {
                    "message": "abort_multipart_upload failed",
                    "bucket": bucket,
                    "key": key,
                    "upload_id": upload_id,
                    "error": describe_error(error)[1],
                }
            )
        )


def mirror_delete(
    s3, source_bucket: str, source_key: str, dest_bucket: str, dest_key: str
) -> CopyOutcome:
    """Delete the backup copy, but only if the source key is really gone.

    A delete event can be stale (the key was written again since) or remove a single version
    of a key that still exists; in both cases the backup keeps its copy ("skipped").
    """
    try:
        head = s3.head_object(Bucket=source_bucket, Key=source_key)
    except ClientError as error:
        if describe_error(error)[0] != "NoSuchKey":
            # 403 is what S3 answers for a missing key without s3:ListBucket: not proof of absence.
            return _failed(error)
    except BotoCoreError as error:
        return _failed(error)
    else:
        return _skipped("source key exists again: backup kept", head.get("ContentLength"))
    try:
        s3.delete_object(Bucket=dest_bucket, Key=dest_key)
    except (ClientError, BotoCoreError) as error:
        return _failed(error)
    return CopyOutcome(DELETED)


# --------------------------------------------------------------------------------------------
# 5. The report (HTTP I/O)
# --------------------------------------------------------------------------------------------

REPORT_MAX_EVENTS = 1000
REPORT_MAX_BYTES = 1024 * 1024
_REPORT_RESERVE_S = 1.0  # time kept back for logging and returning after the last attempt
_REPORT_MAX_ATTEMPTS = 5
_REPORT_MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)
_HEX = re.compile(r"^[0-9A-Fa-f]{1,32}$")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report_entry(
    event: ObjectEvent,
    destination_bucket: str,
    outcome: CopyOutcome,
    *,
    started_at: str,
    finished_at: str,
    request_id: str,
) -> dict:
    """One event of the ingest API's body. ``key`` is the source key, decoded."""
    return {
        "source_bucket": event.bucket,
        "destination_bucket": destination_bucket,
        "key": event.key,
        "version_id": event.version_id,
        "event_name": event.event_name,
        "event_time": event.event_time,
        "sequencer": event.sequencer,
        "size": event.size if event.size is not None else outcome.size,
        # The source's ETag, unquoted as S3 notifications carry it: what was announced.
        "etag": event.etag or (outcome.etag or "").strip('"'),
        "status": outcome.status,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "started_at": started_at,
        "finished_at": finished_at,
        "request_id": request_id,
        "attempt": event.attempt,
    }


def reportable(entry: dict) -> bool:
    """Whether the ingest API can store ``entry``; one that it cannot would refuse the batch."""
    return bool(
        entry["source_bucket"]
        and entry["destination_bucket"]
        and entry["key"]
        and entry["event_time"]
        and _HEX.match(entry["sequencer"] or "")
    )


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ingest API's signature: "sha256=" + hex HMAC-SHA256(secret, "<timestamp>.<body>").

    A copy of replication/ingest/signing.py's ``sign``: this file must deploy alone.
    """
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_request(config: Config, url: str, body: bytes | None = None) -> urllib.request.Request:
    """A request to the site signed with the report key: a POST of ``body``, or a GET."""
    timestamp = str(int(time.time()))
    headers = {
        "X-Backup-Key": config.report_key_id,
        "X-Backup-Timestamp": timestamp,
        "X-Backup-Signature": sign(config.report_secret, timestamp, body or b""),
    }
    if body is not None:
        headers["Content-Type"] = "application/json"
    # The scheme is checked in load_config (and of a redirect, in follow_redirect).
    return urllib.request.Request(  # noqa: S310
        url, data=body, method="GET" if body is None else "POST", headers=headers
    )


def report_bodies(entries: list[dict], extra: dict | None = None) -> Iterator[bytes]:
    """Request bodies within the API's limits: 1,000 events and 1 MiB each. ``extra``
    (top-level fields) goes into the first body, which exists even without entries."""
    tail = b"".join(
        b"," + json.dumps(k).encode() + b":" + json.dumps(v).encode()
        for k, v in (extra or {}).items()
    )
    if not entries and tail:
        yield b'{"events":[]' + tail + b"}"
        return
    batch: list[bytes] = []
    size = len(b'{"events":[]}') + len(tail)
    for entry in entries:
        encoded = json.dumps(entry, separators=(",", ":")).encode("utf-8")
        if batch and (
            len(batch) >= REPORT_MAX_EVENTS or size + len(encoded) + 1 > REPORT_MAX_BYTES
        ):
            yield b'{"events":[' + b",".join(batch) + b"]" + tail + b"}"
            batch, size, tail = [], len(b'{"events":[]}'), b""
        batch.append(encoded)
        size += len(encoded) + 1
    if batch:
        yield b'{"events":[' + b",".join(batch) + b"]" + tail + b"}"


class _RedirectsToCaller(urllib.request.HTTPRedirectHandler):
    """Hand every redirect back as an HTTPError: urllib would follow a 301, 302 or 303 by
    sending the report again as a GET without its body, which the site refuses (405)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_report_opener = urllib.request.build_opener(_RedirectsToCaller)


def follow_redirect(url: str, code: int, location: str | None) -> tuple[str | None, str]:
    """Where a report answered with redirect ``code`` goes next: (new URL, "") for a 307 or
    308, which keep the method and body; (None, why) for anything else.

    A 301, 302 or 303 is a configuration error, not something to follow: S3 events would be
    reported by a GET (lost), so the reason names the URL to set REPORT_URL to.
    """
    if not location:
        return None, f"HTTP {code} without a Location header from {url}"
    target = urllib.parse.urljoin(url, location)
    scheme = urllib.parse.urlsplit(target).scheme
    if scheme not in ("http", "https"):
        return None, f"HTTP {code} from {url} to {target}, which is not an http(s) URL"
    if urllib.parse.urlsplit(url).scheme == "https" and scheme == "http":
        return None, f"HTTP {code} from {url} to {target}: refusing to leave HTTPS"
    if code in (307, 308):
        return target, ""
    return None, (
        f"REPORT_URL {url} answers HTTP {code}, a redirect that turns the report's POST into "
        f"a GET: set REPORT_URL to {target}"
    )


def send_report(
    config: Config,
    entries: list[dict],
    *,
    remaining_s: Callable[[], float],
    urlopen: Callable = _report_opener.open,
    sleep: Callable[[float], None] = time.sleep,
    extra: dict | None = None,
) -> bool:
    """POST the entries, retrying briefly while the invocation has time. Never raises."""
    ok = True
    for body in report_bodies(entries, extra):
        ok = _post(config, body, remaining_s=remaining_s, urlopen=urlopen, sleep=sleep) and ok
    return ok


def _post(config: Config, body: bytes, *, remaining_s, urlopen, sleep) -> bool:
    url, redirects, attempt = config.report_url, 0, 0
    while attempt < _REPORT_MAX_ATTEMPTS:
        attempt += 1
        budget = remaining_s() - _REPORT_RESERVE_S
        if budget <= 0.1:
            problem = "no time left in the invocation"
            break
        # Signed afresh each attempt: the server refuses timestamps older than 300 s. The
        # signature covers the timestamp and the body, not the URL, so a redirected report
        # is the same request sent on.
        request = signed_request(config, url, body)
        try:
            with urlopen(request, timeout=max(0.1, min(5.0, budget))) as response:
                reply = response.read(4096).decode("utf-8", "replace")
            log.info(json.dumps({"message": "report sent", "attempt": attempt, "reply": reply}))
            return True
        except urllib.error.HTTPError as error:
            if error.code in _REDIRECTS:
                target, problem = follow_redirect(url, error.code, error.headers.get("Location"))
                error.close()
                if target is None or redirects >= _REPORT_MAX_REDIRECTS:
                    problem = problem or f"more than {_REPORT_MAX_REDIRECTS} redirects from {url}"
                    # Loud: every report is lost until REPORT_URL is corrected.
                    log.error(
                        json.dumps(
                            {
                                "message": "report not delivered: REPORT_URL is misconfigured",
                                "error": problem,
                            }
                        )
                    )
                    return False
                log.warning(
                    json.dumps(
                        {
                            "message": "report redirected: set REPORT_URL to the new URL",
                            "status": error.code,
                            "from": url,
                            "to": target,
                        }
                    )
                )
                # Sent on at once; a redirect is not a failed attempt (and is bounded above).
                url, redirects, attempt = target, redirects + 1, attempt - 1
                continue
            problem = f"HTTP {error.code}: {error.read(500).decode('utf-8', 'replace')}"
            if error.code < 500 and error.code not in (408, 429):
                break  # the request itself is wrong: sending it again cannot help
        except (urllib.error.URLError, OSError) as error:
            problem = f"{type(error).__name__}: {error}"
        delay = min(2.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
        if remaining_s() - delay - _REPORT_RESERVE_S <= 0.1:
            break
        sleep(delay)
    log.error(json.dumps({"message": "report not delivered", "error": problem}))
    return False


# --------------------------------------------------------------------------------------------
# 5b. The destructive-change guard's holds (HTTP I/O, cached per container)
# --------------------------------------------------------------------------------------------

GUARD_CACHE_SECONDS = 15
_GUARD_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Holds:
    """The pairs whose guard holds, as ("bucket/prefix" of the source, of the backup); of
    those, the ones whose source a restore is writing, with the pair's name."""

    pairs: frozenset[tuple[str, str]] = frozenset()
    read_at: float = 0.0
    lookup_failed: bool = False
    restoring: frozenset[tuple[str, str, str]] = frozenset()  # (source, backup, pair name)

    def holds(self, source: str, backup: str) -> bool:
        return (source, backup) in self.pairs

    def restoring_pair(self, source: str, backup: str) -> str | None:
        return next((n for s, b, n in self.restoring if (s, b) == (source, backup)), None)


_holds: Holds | None = None
# Lookups that failed since the last report that said so (the site counts them).
_lookup_failures = 0


def current_holds(
    config: Config,
    *,
    clock: Callable[[], float] = time.monotonic,
    urlopen: Callable = urllib.request.urlopen,
) -> Holds:
    """The holds, read at most once per GUARD_CACHE_SECONDS per container. When the site
    cannot answer, there are none (changes are applied), and the log says so."""
    global _holds, _lookup_failures
    now = clock()
    if _holds is not None and now - _holds.read_at < GUARD_CACHE_SECONDS:
        return _holds
    if not config.guard_url:
        _holds = Holds(read_at=now)
        return _holds
    request = signed_request(config, config.guard_url)
    try:
        with urlopen(request, timeout=_GUARD_TIMEOUT_S) as response:
            document = json.loads(response.read(1024 * 1024).decode("utf-8"))
        pairs = frozenset((h["source"], h["backup"]) for h in document["holds"])
        restoring = frozenset(
            (h["source"], h["backup"], h["pair"]) for h in document["holds"] if h.get("restoring")
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.error(
            json.dumps(
                {
                    "message": "guard lookup failed: applying changes without it",
                    "url": config.guard_url,
                    "error": f"{type(error).__name__}: {error}",
                }
            )
        )
        _lookup_failures += 1
        _holds = Holds(read_at=now, lookup_failed=True)
        return _holds
    _holds = Holds(pairs, read_at=now, restoring=restoring)
    return _holds


def restore_writes(
    config: Config,
    holds: Holds,
    events: list[ObjectEvent],
    *,
    urlopen: Callable = urllib.request.urlopen,
) -> frozenset[tuple[str, str, str]]:
    """Of the copies among ``events`` into a held pair whose source a restore is writing, the
    restore's own writes, as (bucket, key, etag): one signed POST per such pair and
    invocation, none otherwise. When the site cannot answer, none: they are held as any
    change would be, and the log and the next report say so."""
    global _lookup_failures
    asked: dict[str, list[ObjectEvent]] = {}
    for event in events:
        route = config.route_for(event.bucket)
        if not (route and event.etag and action_for(event.event_name) == COPY):
            continue
        name = holds.restoring_pair(
            f"{event.bucket}/{route.source_prefix}",
            f"{route.destination_bucket}/{route.destination_prefix}",
        )
        if name is not None:
            asked.setdefault(name, []).append(event)
    found = set()
    for name, candidates in asked.items():
        url = urllib.parse.urljoin(config.guard_url, f"pairs/{urllib.parse.quote(name)}/restored")
        objects = [{"key": e.key, "etag": e.etag} for e in candidates]
        body = json.dumps({"objects": objects}).encode()
        request = signed_request(config, url, body)
        buckets = {(e.key, e.etag): e.bucket for e in candidates}
        try:
            with urlopen(request, timeout=_GUARD_TIMEOUT_S) as response:
                document = json.loads(response.read(4 * 1024 * 1024).decode("utf-8"))
            for obj in document["restored"]:
                bucket = buckets.get((obj["key"], obj["etag"]))
                if bucket is not None:
                    found.add((bucket, obj["key"], obj["etag"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.error(
                json.dumps(
                    {
                        "message": "restore lookup failed: its writes are held as any change",
                        "url": url,
                        "error": f"{type(error).__name__}: {error}",
                    }
                )
            )
            _lookup_failures += 1
    return frozenset(found)


def held_change(
    s3, event: ObjectEvent, action: str, dest_bucket: str, dest_key: str, config: Config
) -> bool:
    """Whether a held pair must not apply this change: a delete it would mirror, or a copy
    over an object the backup already has. New keys are still copied. A HEAD that cannot
    tell (denied, throttled) holds too: the guard errs on the side of keeping the backup."""
    if action == DELETE and not config.mirror_deletes:
        return False  # not applied anyway: the backup keeps what the source deleted
    if action not in (COPY, DELETE):
        return False
    return _object_exists(s3, dest_bucket, dest_key) is not False


# --------------------------------------------------------------------------------------------
# 6. The handler
# --------------------------------------------------------------------------------------------


class ReplicationFailed(RuntimeError):
    """Raised after reporting, so that Lambda retries and then uses the on-failure destination."""


_client = None


def s3_client():
    """One client per container: creating it costs more than most copies."""
    global _client
    if _client is None:
        _client = make_s3_client()
    return _client


def lambda_handler(event: dict, context: Any) -> dict:
    return handle(event, context, s3=s3_client(), config=load_config(os.environ))


def handle(event: dict, context: Any, *, s3, config: Config) -> dict:
    """Process every record, report once, then fail the invocation if any copy failed.

    Returns {"copied", "skipped", "deleted", "failed", "held"} counts; for SQS it adds
    "batchItemFailures" (and never raises), so that only the failed messages are retried. A
    change held by the destructive-change guard is neither a failure nor retried.
    """
    request_id = getattr(context, "aws_request_id", "") or ""
    parsed = parse_event(event)
    counts = {COPIED: 0, SKIPPED: 0, DELETED: 0, FAILED: 0, HELD: 0}
    entries = []
    failed_messages = {bad.message_id: bad.reason for bad in parsed.bad_messages}
    for bad in parsed.bad_messages:
        counts[FAILED] += 1
        log.error(
            json.dumps(
                {
                    "message": "unreadable SQS message",
                    "message_id": bad.message_id,
                    "error": bad.reason,
                    "request_id": request_id,
                }
            )
        )

    holds = current_holds(config) if parsed.records else Holds()
    restored = restore_writes(config, holds, parsed.records) if holds.restoring else frozenset()
    for record in parsed.records:
        started_at = utc_now()
        record = resolve_delivered_key(s3, record, request_id=request_id)
        destination, outcome = process_record(s3, config, record, holds=holds, restored=restored)
        entry = report_entry(
            record,
            destination,
            outcome,
            started_at=started_at,
            finished_at=utc_now(),
            request_id=request_id,
        )
        counts[outcome.status] += 1
        if outcome.status == FAILED and record.message_id is not None:
            failed_messages[record.message_id] = outcome.error_code
        log_line = {"message": "record", **entry}
        (log.error if outcome.status == FAILED else log.info)(json.dumps(log_line))
        if reportable(entry):
            entries.append(entry)

    global _lookup_failures
    failures = _lookup_failures
    extra = {"guard_lookup_failures": failures} if failures else None
    sent = bool(config.report_url and (entries or extra)) and send_report(
        config, entries, remaining_s=_remaining_seconds(context), extra=extra
    )
    if sent and failures:
        _lookup_failures -= failures  # said; later failures stay for the next report

    if parsed.from_sqs:
        return {**counts, "batchItemFailures": [{"itemIdentifier": m} for m in failed_messages]}
    if counts[FAILED]:
        raise ReplicationFailed(
            f"{counts[FAILED]} of {len(parsed.records)} records failed; see the log lines"
        )
    return counts


def resolve_delivered_key(s3, event: ObjectEvent, *, request_id: str = "") -> ObjectEvent:
    """The event with the key to copy: the decoded key, or, when only it exists, the key as
    EventBridge delivered it (logged, since it means the delivery was not encoded)."""
    if not event.delivered_key or action_for(event.event_name) != COPY:
        return event
    if _object_exists(s3, event.bucket, event.key) is not False:
        return event
    if not _object_exists(s3, event.bucket, event.delivered_key):
        return event
    log.warning(
        json.dumps(
            {
                "message": "key copied as delivered: its decoded form does not exist",
                "bucket": event.bucket,
                "decoded_key": event.key,
                "delivered_key": event.delivered_key,
                "request_id": request_id,
            }
        )
    )
    return replace(event, key=event.delivered_key, delivered_key="")


def _object_exists(s3, bucket: str, key: str) -> bool | None:
    """True or False from a HEAD; None when the HEAD could not tell (denied, throttled)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        return False if describe_error(error)[0] in ("NoSuchKey", "404", "NotFound") else None
    except BotoCoreError:
        return None
    return True


def process_record(
    s3,
    config: Config,
    event: ObjectEvent,
    *,
    holds: Holds | None = None,
    restored: frozenset[tuple[str, str, str]] = frozenset(),
) -> tuple[str, CopyOutcome]:
    """Apply one event to the backup: (destination bucket, outcome). Never raises for AWS.

    While the pair's guard holds (``holds``), deletes and overwrites of objects the backup
    has are reported "held" instead of applied, except a restore's own writes into the
    source (``restored``: (bucket, key, etag)), which are the recovery.
    """
    if event.bucket in config.backup_buckets:
        # Recursion guard: the function must never copy its own writes again.
        return "", _skipped(f"recursion guard: {event.bucket!r} is a backup bucket")
    route = config.route_for(event.bucket)
    if route is None:
        return "", _skipped(f"no route for bucket {event.bucket!r} in REPLICATION_MAP")
    dest_key = backup_key(route, event.key)
    if dest_key is None:
        return route.destination_bucket, _skipped(
            f"outside the pair: key is not under SOURCE_PREFIX {route.source_prefix!r}"
        )
    action = action_for(event.event_name)
    if (
        holds is not None
        and holds.pairs
        and holds.holds(
            f"{event.bucket}/{route.source_prefix}",
            f"{route.destination_bucket}/{route.destination_prefix}",
        )
        and (event.bucket, event.key, event.etag) not in restored
        and held_change(s3, event, action, route.destination_bucket, dest_key, config)
    ):
        return route.destination_bucket, CopyOutcome(
            HELD, error_message="held by the destructive-change guard: the backup keeps its copy"
        )
    if action == COPY:
        outcome = copy_object(
            s3,
            event.bucket,
            event.key,
            route.destination_bucket,
            dest_key,
            version_id=event.version_id or None,
            expected_etag=event.etag or None,
            storage_class=config.storage_class,
            max_bytes=config.max_copy_bytes,
        )
    elif action == DELETE and config.mirror_deletes:
        outcome = mirror_delete(s3, event.bucket, event.key, route.destination_bucket, dest_key)
    elif action == DELETE:
        outcome = _skipped("backup kept: MIRROR_DELETES is off")
    else:
        outcome = _skipped(f"ignored: {event.event_name} does not change the object's content")
    return route.destination_bucket, outcome


def _remaining_seconds(context: Any) -> Callable[[], float]:
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(get_remaining):
        return lambda: get_remaining() / 1000
    # Outside Lambda (tests, local runs): allow a short, fixed budget.
    deadline = time.monotonic() + 10.0
    return lambda: deadline - time.monotonic()

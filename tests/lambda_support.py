"""Builders shared by the tests/test_lambda_*.py files (no tests here).

Events are built the way AWS builds them, encoding included, so the handler's decoding is
tested against what S3, SQS, SNS and EventBridge really send.
"""

import io
import itertools
import json
import urllib.parse
from dataclasses import dataclass

from botocore.awsrequest import AWSResponse

from replication import lambda_function

SOURCE = "photos-src"
BACKUP = "photos-bak"

CONFIG_VARS = (
    "DESTINATION_BUCKET",
    "REPLICATION_MAP",
    "DESTINATION_PREFIX",
    "SOURCE_PREFIX",
    "DESTINATION_STORAGE_CLASS",
    "MIRROR_DELETES",
    "REPORT_URL",
    "REPORT_KEY_ID",
    "REPORT_SECRET",
    "MAX_COPY_GIB",
    "GUARD_URL",
)

_sequencer = itertools.count(0x0055AED6DCAE1A0000)


def next_sequencer() -> str:
    return f"{next(_sequencer):018X}"


@dataclass
class FakeContext:
    """The parts of Lambda's context object the handler reads."""

    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def s3_record(
    key: str,
    *,
    bucket: str = SOURCE,
    event_name: str = "ObjectCreated:Put",
    etag: str | None = None,
    size: int | None = None,
    version_id: str | None = None,
    sequencer: str | None = None,
) -> dict:
    """One record of an S3 event notification; the key is form-encoded as S3 encodes it."""
    obj = {
        "key": urllib.parse.quote_plus(key, safe="/"),
        "sequencer": sequencer or next_sequencer(),
    }
    if etag is not None:
        obj["eTag"] = etag.strip('"')
    if size is not None:
        obj["size"] = size
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T12:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "backup",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def s3_event(*records: dict) -> dict:
    return {"Records": list(records)}


def put_event(s3, key: str, body: bytes = b"content", *, bucket: str = SOURCE, **put) -> dict:
    """Write an object and return the notification S3 would send for it."""
    result = s3.put_object(Bucket=bucket, Key=key, Body=body, **put)
    return s3_event(
        s3_record(
            key,
            bucket=bucket,
            etag=result["ETag"],
            size=len(body),
            version_id=result.get("VersionId"),
        )
    )


def sns_envelope(payload: dict) -> dict:
    """What SNS delivers to SQS (raw delivery off): the notification as a JSON string."""
    return {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:s3-events",
        "Message": json.dumps(payload),
    }


def sns_event(payload: dict) -> dict:
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "Sns": {"Type": "Notification", "Message": json.dumps(payload)},
            }
        ]
    }


def sqs_message(body: str, *, message_id: str, receive_count: int = 1) -> dict:
    return {
        "messageId": message_id,
        "receiptHandle": "AQEB" + message_id,
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:s3-events",
    }


def sqs_event(*messages: dict) -> dict:
    return {"Records": list(messages)}


def eventbridge_event(
    key: str,
    *,
    detail_type: str = "Object Created",
    reason: str = "PutObject",
    bucket: str = SOURCE,
    etag: str | None = None,
    size: int | None = None,
    version_id: str | None = None,
    deletion_type: str | None = None,
) -> dict:
    """An EventBridge event from S3 carrying ``key`` exactly as given (encode it yourself)."""
    obj = {"key": key, "sequencer": next_sequencer()}
    if etag is not None:
        obj["etag"] = etag.strip('"')
    if size is not None:
        obj["size"] = size
    if version_id is not None:
        obj["version-id"] = version_id
    detail = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": obj,
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "reason": reason,
    }
    if deletion_type:
        detail["deletion-type"] = deletion_type
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-27T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": detail,
    }


def make_buckets(s3, *names: str, versioned: bool = False) -> None:
    for name in names or (SOURCE, BACKUP):
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def version_buckets(s3, *names: str) -> None:
    """Turn versioning on for buckets that exist (the ``s3`` fixture's by default)."""
    for name in names or (SOURCE, BACKUP):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def invoke(monkeypatch, s3, event: dict, *, context=None, **env: str) -> dict:
    """Run the real entry point, lambda_handler, with exactly ``env`` as its configuration."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    if "REPLICATION_MAP" not in env:
        env.setdefault("DESTINATION_BUCKET", BACKUP)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(lambda_function, "_client", s3)
    return lambda_function.lambda_handler(event, context or FakeContext())


def backup_body(s3, key: str, bucket: str = BACKUP) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def backup_keys(s3, bucket: str = BACKUP) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


class _Body(io.BytesIO):
    def stream(self, **_):
        yield self.getvalue()


def _error_body(operation: str, code: str) -> bytes:
    if operation.startswith("Head"):
        return b""  # HEAD answers carry no body: the client only sees the status
    return f"<Error><Code>{code}</Code><Message>injected {code}</Message></Error>".encode()


def answer_with_error(s3, operation: str, *, status: int, code: str, when=None):
    """Make ``operation`` fail with an AWS error instead of reaching moto at all.

    Only requests whose URL satisfies ``when(url)`` fail (all when None). The answer is given
    before the request is sent, so moto never performs it (and botocore does not retry it).
    Returns the list of URLs it answered.
    """
    answered = []

    def answer(params, **_):
        if when is not None and not when(params["url"]):
            return None
        answered.append(params["url"])
        response = AWSResponse(params["url"], status, {}, _Body(_error_body(operation, code)))
        parsed = {
            "Error": {"Code": code, "Message": f"injected {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return response, parsed

    s3.meta.events.register_first(f"before-call.s3.{operation}", answer)
    return answered


def answer_on_the_wire(s3, operation: str, *, status: int, code: str, times: int):
    """Answer the first ``times`` sends of ``operation`` with an error, as a server would.

    Unlike answer_with_error this acts where botocore's retries see it; moto still performs
    each request behind it, so use it only for operations that are safe to repeat.
    """
    answered = []

    def answer(request, **_):
        if len(answered) >= times:
            return None
        answered.append(request.url)
        return AWSResponse(request.url, status, {}, _Body(_error_body(operation, code)))

    s3.meta.events.register_first(f"before-send.s3.{operation}", answer)
    return answered

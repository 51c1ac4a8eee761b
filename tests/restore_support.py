"""A versioned backup with a history, written at known moments, for the restore tests."""

from datetime import UTC, datetime, timedelta

import time_machine

PART = 5 * 1024 * 1024  # S3's (and moto's) smallest part but the last


def moments(hours_ago: int = 6) -> list[datetime]:
    """Whole seconds, an hour apart, in the past (moto stamps versions to the second)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
    return [start + timedelta(hours=i) for i in range(hours_ago)]


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def versioned(s3, *buckets: str) -> None:
    for bucket in buckets:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def put_in_parts(
    s3, bucket: str, key: str, sizes: list[int], fill: bytes = b"p"
) -> tuple[bytes, str]:
    """A multipart object with parts of ``sizes`` bytes: (its bytes, its ETag)."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-test")
    parts, body = [], b""
    for number, size in enumerate(sizes, start=1):
        chunk = (fill * (size // len(fill) + 1))[:size]
        body += chunk
        result = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=chunk
        )
        parts.append({"PartNumber": number, "ETag": result["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    return body, done["ETag"].strip('"')


def held(s3, bucket: str, prefix: str = "") -> dict[str, tuple[bytes, str]]:
    """Every current object under ``prefix``: key (prefix removed) -> (bytes, ETag)."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            found[obj["Key"][len(prefix) :]] = (body, obj["ETag"].strip('"'))
    return found

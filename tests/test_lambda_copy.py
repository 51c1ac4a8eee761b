"""Copies: bytes, ETags, headers, tags, versions, superseded events, errors (moto and
LocalStack: tests/s3_backends.py)."""

import threading

import boto3
import pytest

from replication import lambda_function
from replication.lambda_function import ReplicationFailed, copy_object
from tests.lambda_support import (
    BACKUP,
    SOURCE,
    answer_on_the_wire,
    answer_with_error,
    backup_body,
    backup_keys,
    invoke,
    make_buckets,
    put_event,
    s3_event,
    s3_record,
    version_buckets,
)
from tests.s3_backends import differs_from_s3
from tests.test_lambda_events import TRICKY_KEYS

pytestmark = pytest.mark.s3_backends

MiB = 1024 * 1024


def upload_in_parts(s3, key: str, part_sizes: list[int], **create) -> str:
    upload = s3.create_multipart_upload(Bucket=SOURCE, Key=key, **create)
    parts = []
    for number, size in enumerate(part_sizes, start=1):
        part = s3.upload_part(
            Bucket=SOURCE,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=bytes([number % 256]) * size,
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=SOURCE, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    return done["ETag"]


def incomplete_uploads(s3, bucket: str = BACKUP) -> list:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


# --- what a copy keeps --------------------------------------------------------------------------


def test_handler_copy_keeps_bytes_etag_headers_metadata_and_tags(s3, monkeypatch):
    event = put_event(
        s3,
        "report.pdf",
        b"%PDF-1.7 body",
        ContentType="application/pdf",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="report.pdf"',
        ContentEncoding="identity",
        ContentLanguage="fr",
        Expires="Wed, 21 Oct 2037 07:28:00 GMT",
        Metadata={"owner": "finance", "checksum": "abc"},
        Tagging="class=secret&team=a%20b",
    )

    result = invoke(monkeypatch, s3, event, DESTINATION_STORAGE_CLASS="STANDARD_IA")

    assert result == {"copied": 1, "skipped": 0, "deleted": 0, "failed": 0, "held": 0}
    source = s3.head_object(Bucket=SOURCE, Key="report.pdf")
    backup = s3.head_object(Bucket=BACKUP, Key="report.pdf")
    for header in (
        "ETag",
        "ContentType",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "Metadata",
    ):
        assert backup[header] == source[header], header
    assert backup["StorageClass"] == "STANDARD_IA"
    assert backup_body(s3, "report.pdf") == b"%PDF-1.7 body"
    tags = s3.get_object_tagging(Bucket=BACKUP, Key="report.pdf")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("class", "secret"), ("team", "a b")]


def test_handler_copy_keeps_the_expires_header(s3, monkeypatch, request):
    differs_from_s3(request, "localstack", "drops Expires from a CopyObject that copies metadata")
    event = put_event(s3, "page.html", b"<html>", Expires="Wed, 21 Oct 2037 07:28:00 GMT")

    invoke(monkeypatch, s3, event)

    backup = s3.head_object(Bucket=BACKUP, Key="page.html")
    assert backup.get("ExpiresString") == "Wed, 21 Oct 2037 07:28:00 GMT"


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_handler_copies_tricky_keys_under_their_exact_name(s3, monkeypatch, key):
    event = put_event(s3, key, key.encode("utf-8"))

    result = invoke(monkeypatch, s3, event)

    assert result["copied"] == 1
    assert backup_keys(s3) == [key]
    assert backup_body(s3, key) == key.encode("utf-8")


def test_handler_puts_backup_under_destination_prefix_minus_source_prefix(s3, monkeypatch):
    inside = put_event(s3, "app/logs/a.txt", b"in")
    outside = put_event(s3, "tmp/b.txt", b"out")

    result = invoke(
        monkeypatch,
        s3,
        s3_event(*inside["Records"], *outside["Records"]),
        SOURCE_PREFIX="app/",
        DESTINATION_PREFIX="backup/",
    )

    assert (result["copied"], result["skipped"]) == (1, 1)
    assert backup_keys(s3) == ["backup/logs/a.txt"]


def test_handler_serves_several_pairs_from_replication_map(s3, monkeypatch):
    make_buckets(s3, "logs-src", "logs-bak")
    photos = put_event(s3, "p.jpg", b"photo")
    logs = put_event(s3, "app/l.txt", b"log", bucket="logs-src")
    mapping = (
        f'{{"{SOURCE}": "{BACKUP}", '
        '"logs-src": {"bucket": "logs-bak", "prefix": "2026/", "source_prefix": "app/"}}'
    )

    result = invoke(
        monkeypatch, s3, s3_event(*photos["Records"], *logs["Records"]), REPLICATION_MAP=mapping
    )

    assert result["copied"] == 2
    assert backup_keys(s3) == ["p.jpg"]
    assert backup_keys(s3, "logs-bak") == ["2026/l.txt"]


# --- multipart ----------------------------------------------------------------------------------


def test_multipart_source_yields_backup_with_identical_etag_and_headers(s3):
    etag = upload_in_parts(
        s3,
        "video.mp4",
        [5 * MiB, 5 * MiB, 1234],
        ContentType="video/mp4",
        Metadata={"camera": "A"},
        Tagging="kind=video",
    )

    outcome = copy_object(
        s3,
        SOURCE,
        "video.mp4",
        BACKUP,
        "video.mp4",
        expected_etag=etag,
        storage_class="STANDARD_IA",
    )

    assert outcome.status == "copied"
    assert outcome.etag == etag
    assert outcome.size == 10 * MiB + 1234
    backup = s3.head_object(Bucket=BACKUP, Key="video.mp4")
    assert backup["ETag"] == etag
    assert backup["ContentType"] == "video/mp4"
    assert backup["Metadata"] == {"camera": "A"}
    assert backup["StorageClass"] == "STANDARD_IA"
    assert s3.get_object_tagging(Bucket=BACKUP, Key="video.mp4")["TagSet"] == [
        {"Key": "kind", "Value": "video"}
    ]
    source_bytes = s3.get_object(Bucket=SOURCE, Key="video.mp4")["Body"].read()
    assert backup_body(s3, "video.mp4") == source_bytes


def test_irregular_part_sizes_are_copied_with_every_boundary_and_the_etag_kept(s3):
    sizes = [5 * MiB, 7 * MiB, 5 * MiB + 1, 1]
    etag = upload_in_parts(s3, "odd.bin", sizes)

    outcome = copy_object(s3, SOURCE, "odd.bin", BACKUP, "odd.bin", expected_etag=etag)

    assert (outcome.status, outcome.etag, outcome.size) == ("copied", etag, sum(sizes))
    # Part by part, in order: equal lengths put every boundary at the same byte.
    for number, size in enumerate(sizes, start=1):
        source = s3.head_object(Bucket=SOURCE, Key="odd.bin", PartNumber=number)
        backup = s3.head_object(Bucket=BACKUP, Key="odd.bin", PartNumber=number)
        assert backup["ContentLength"] == source["ContentLength"] == size
    assert backup_body(s3, "odd.bin") == s3.get_object(Bucket=SOURCE, Key="odd.bin")["Body"].read()


def test_a_multipart_object_larger_than_the_limit_is_failed_with_the_reason(s3, monkeypatch):
    etag = upload_in_parts(s3, "huge.bin", [5 * MiB, 5 * MiB])
    event = s3_event(s3_record("huge.bin", etag=etag, size=10 * MiB))

    with pytest.raises(ReplicationFailed):
        invoke(monkeypatch, s3, event, MAX_COPY_GIB=str(9 * MiB / 1024**3))

    assert backup_keys(s3) == []
    assert incomplete_uploads(s3) == []


def test_copy_object_reports_too_large_objects_as_failed_not_copied(s3):
    etag = upload_in_parts(s3, "huge.bin", [5 * MiB, 5 * MiB])

    outcome = copy_object(
        s3, SOURCE, "huge.bin", BACKUP, "huge.bin", expected_etag=etag, max_bytes=9 * MiB
    )

    assert (outcome.status, outcome.error_code, outcome.size) == (
        "failed",
        "ObjectTooLarge",
        10 * MiB,
    )
    assert outcome.error_message.startswith("too large: 10485760 bytes")
    assert "repair it with a reconcile" in outcome.error_message


def test_the_size_limit_is_read_in_gib_and_refuses_words():
    assert lambda_function.load_config({"DESTINATION_BUCKET": "b"}).max_copy_bytes == 50 * 1024**3
    config = lambda_function.load_config({"DESTINATION_BUCKET": "b", "MAX_COPY_GIB": "0.5"})
    assert config.max_copy_bytes == 512 * MiB
    with pytest.raises(lambda_function.ConfigError, match="MAX_COPY_GIB"):
        lambda_function.load_config({"DESTINATION_BUCKET": "b", "MAX_COPY_GIB": "lots"})


def test_multipart_copy_that_fails_leaves_no_incomplete_upload(s3):
    etag = upload_in_parts(s3, "big.bin", [5 * MiB, 5 * MiB, 10])
    answer_with_error(
        s3,
        "UploadPartCopy",
        status=403,
        code="AccessDenied",
        when=lambda url: "partNumber=2" in url,
    )

    outcome = copy_object(s3, SOURCE, "big.bin", BACKUP, "big.bin", expected_etag=etag)

    assert (outcome.status, outcome.error_code) == ("failed", "AccessDenied")
    assert incomplete_uploads(s3) == []
    assert backup_keys(s3) == []


def test_multipart_source_overwritten_during_copy_is_skipped_and_aborted(s3, monkeypatch):
    # One part at a time, so the overwrite falls between the two copies (moto also fails a
    # copy that reads the key while it is overwritten).
    monkeypatch.setattr(lambda_function, "_PART_COPY_THREADS", 1)
    etag = upload_in_parts(s3, "big.bin", [5 * MiB, 5 * MiB])
    overwritten = []

    def overwrite_source(**_):
        if not overwritten:
            # As long as before: the second part copy is refused for its ETag, not its range.
            s3.put_object(Bucket=SOURCE, Key="big.bin", Body=b"n" * 10 * MiB)
            overwritten.append(True)

    # S3 refuses the part copies that follow (CopySourceIfMatch); moto ignores it, and the
    # check before completing must catch the change.
    s3.meta.events.register("after-call.s3.UploadPartCopy", overwrite_source)

    outcome = copy_object(s3, SOURCE, "big.bin", BACKUP, "big.bin", expected_etag=etag)

    assert outcome.status == "skipped"
    assert "superseded" in outcome.error_message
    assert incomplete_uploads(s3) == []
    assert backup_keys(s3) == []


def test_a_multipart_event_overtaken_by_a_shorter_write_is_skipped_not_failed(s3):
    # Found with LocalStack, which checks a part's byte range against the new, shorter source
    # before CopySourceIfMatch and answers InvalidArgument, not PreconditionFailed (moto
    # copies, and the check before completing says "superseded").
    etag = upload_in_parts(s3, "big.bin", [5 * MiB, 5 * MiB])
    copies = []
    first = threading.Lock()

    def overwrite_source_before_the_first_part(**_):
        # Once, before any part copy is sent: the parallel part copies wait for it here.
        with first:
            if not copies:
                s3.put_object(Bucket=SOURCE, Key="big.bin", Body=b"newer content")
            copies.append("part")

    s3.meta.events.register("before-call.s3.UploadPartCopy", overwrite_source_before_the_first_part)

    outcome = copy_object(s3, SOURCE, "big.bin", BACKUP, "big.bin", expected_etag=etag)

    assert outcome.status == "skipped", (outcome.error_code, outcome.error_message)
    assert incomplete_uploads(s3) == []
    assert backup_keys(s3) == []


# --- versions and superseded events -------------------------------------------------------------


def test_handler_copies_the_version_the_event_announced(s3, monkeypatch):
    version_buckets(s3)
    event = put_event(s3, "doc.txt", b"version one")
    version = event["Records"][0]["s3"]["object"]["versionId"]

    result = invoke(monkeypatch, s3, event)

    assert result["copied"] == 1
    assert backup_body(s3, "doc.txt") == b"version one"
    copied = s3.head_object(Bucket=SOURCE, Key="doc.txt", VersionId=version)
    assert s3.head_object(Bucket=BACKUP, Key="doc.txt")["ETag"] == copied["ETag"]


def test_handler_skips_versioned_event_overtaken_by_newer_write(s3, monkeypatch):
    version_buckets(s3)
    old_event = put_event(s3, "doc.txt", b"old")
    new_event = put_event(s3, "doc.txt", b"new")
    invoke(monkeypatch, s3, new_event)

    # The old event arrives late (S3 does not promise order): it must not win.
    result = invoke(monkeypatch, s3, old_event)

    assert result == {"copied": 0, "skipped": 1, "deleted": 0, "failed": 0, "held": 0}
    assert backup_body(s3, "doc.txt") == b"new"


def test_handler_skips_event_overtaken_by_newer_write(s3, monkeypatch):
    old_event = put_event(s3, "doc.txt", b"old")
    new_event = put_event(s3, "doc.txt", b"new, longer")

    late = invoke(monkeypatch, s3, old_event)
    current = invoke(monkeypatch, s3, new_event)

    assert late["skipped"] == 1 and late["copied"] == 0
    assert current["copied"] == 1
    assert backup_body(s3, "doc.txt") == b"new, longer"


def test_superseded_event_is_refused_by_s3_and_writes_nothing(s3, monkeypatch, request):
    differs_from_s3(
        request,
        "moto",
        "ignores CopySourceIfMatch: the late event writes the source's current content "
        "before it is reported skipped (never older content)",
    )
    old_event = put_event(s3, "doc.txt", b"old")
    s3.put_object(Bucket=SOURCE, Key="doc.txt", Body=b"new, longer")

    late = invoke(monkeypatch, s3, old_event)

    assert (late["skipped"], late["copied"]) == (1, 0)
    assert backup_keys(s3) == []


def test_a_source_changed_before_its_parts_are_copied_leaves_nothing(s3, request):
    differs_from_s3(request, "moto", "ignores CopySourceIfMatch on UploadPartCopy")
    etag = upload_in_parts(s3, "big.bin", [5 * MiB, 5 * MiB])
    copies = []
    first = threading.Lock()

    def overwrite_source_before_the_first_part(**_):
        # Once, before any part copy is sent: the parallel part copies wait for it here.
        with first:
            if not copies:
                # As long as before: every part's byte range still exists.
                s3.put_object(Bucket=SOURCE, Key="big.bin", Body=b"n" * 10 * MiB)
            copies.append("part")

    def no_check_after_the_parts(**_):
        # The check before completing would catch the change too: S3 must refuse first.
        if copies:
            pytest.fail("the part copies of a changed source were not refused")

    # Between the HEAD and the part copies: only CopySourceIfMatch can notice.
    s3.meta.events.register("before-call.s3.UploadPartCopy", overwrite_source_before_the_first_part)
    s3.meta.events.register("before-call.s3.HeadObject", no_check_after_the_parts)

    outcome = copy_object(s3, SOURCE, "big.bin", BACKUP, "big.bin", expected_etag=etag)

    assert outcome.status == "skipped"
    assert incomplete_uploads(s3) == []
    assert backup_keys(s3) == []


def test_copy_of_source_deleted_after_its_event_is_skipped(s3, monkeypatch):
    event = put_event(s3, "gone.txt", b"short-lived")
    s3.delete_object(Bucket=SOURCE, Key="gone.txt")

    result = invoke(monkeypatch, s3, event)

    assert result["skipped"] == 1
    assert backup_keys(s3) == []


def test_copy_without_expectations_copies_current_content(s3):
    s3.put_object(Bucket=SOURCE, Key="a", Body=b"now")

    outcome = copy_object(s3, SOURCE, "a", BACKUP, "copies/a")

    assert outcome.status == "copied"
    assert outcome.size == 3
    assert outcome.etag == s3.head_object(Bucket=SOURCE, Key="a")["ETag"]
    assert backup_body(s3, "copies/a") == b"now"


# --- errors and retries -------------------------------------------------------------------------


def test_access_denied_on_source_is_reported_failed_and_handler_raises(s3, monkeypatch):
    event = put_event(s3, "secret.txt", b"x")
    answer_with_error(s3, "CopyObject", status=403, code="AccessDenied")

    with pytest.raises(ReplicationFailed, match="1 of 1 records failed"):
        invoke(monkeypatch, s3, event)

    assert backup_keys(s3) == []


def test_access_denied_reading_headers_of_a_multipart_source_is_failed(s3):
    etag = upload_in_parts(s3, "big.bin", [5 * MiB, 10])
    answer_with_error(s3, "HeadObject", status=403, code="AccessDenied")

    outcome = copy_object(s3, SOURCE, "big.bin", BACKUP, "big.bin", expected_etag=etag)

    assert (outcome.status, outcome.error_code) == ("failed", "AccessDenied")
    assert incomplete_uploads(s3) == []


def test_backup_etag_that_differs_only_by_encryption_still_counts_as_copied(s3):
    # A bucket encrypting with SSE-KMS gives copies ETags that are not MD5s.
    etag = s3.put_object(Bucket=SOURCE, Key="k", Body=b"x")["ETag"]

    def kms_etag(parsed, **_):
        parsed["CopyObjectResult"]["ETag"] = '"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"'

    s3.meta.events.register("after-call.s3.CopyObject", kms_etag)

    outcome = copy_object(s3, SOURCE, "k", BACKUP, "k", expected_etag=etag)

    assert outcome.status == "copied"
    assert outcome.etag == '"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"'


def test_copy_of_missing_source_bucket_fails_with_no_such_bucket(s3):
    outcome = copy_object(s3, "no-such-bucket", "k", BACKUP, "k", expected_etag="abc")

    assert outcome.status == "failed"
    assert outcome.error_code == "NoSuchBucket"


def test_kms_error_is_failed_with_aws_code_and_kms_class(s3):
    s3.put_object(Bucket=SOURCE, Key="k", Body=b"x")
    answer_with_error(s3, "CopyObject", status=400, code="KMS.DisabledException")

    outcome = copy_object(s3, SOURCE, "k", BACKUP, "k")

    assert outcome.status == "failed"
    assert outcome.error_code == "KMS.DisabledException"
    assert outcome.error_message.startswith("kms: ")


def test_copy_retries_through_slowdown(s3, monkeypatch):
    # Standard retry mode sleeps between attempts; the test does not need to wait.
    monkeypatch.setattr("botocore.retries.standard.time.sleep", lambda seconds: None, raising=False)
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None, raising=False)
    s3.put_object(Bucket=SOURCE, Key="k", Body=b"x")
    throttled = answer_on_the_wire(s3, "CopyObject", status=503, code="SlowDown", times=2)

    outcome = copy_object(s3, SOURCE, "k", BACKUP, "k")

    assert outcome.status == "copied"
    assert len(throttled) == 2
    assert backup_body(s3, "k") == b"x"


def test_persistent_slowdown_is_failed_as_throttled(s3, monkeypatch):
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None, raising=False)
    s3.put_object(Bucket=SOURCE, Key="k", Body=b"x")
    throttled = answer_on_the_wire(s3, "CopyObject", status=503, code="SlowDown", times=100)

    outcome = copy_object(s3, SOURCE, "k", BACKUP, "k")

    assert (outcome.status, outcome.error_code) == ("failed", "SlowDown")
    assert len(throttled) == 6  # the first attempt and max_attempts=5 retries
    assert outcome.error_message.startswith("throttled: ")


def test_handler_client_uses_standard_retries_and_timeouts():
    config = lambda_function.make_s3_client().meta.config

    assert config.retries["mode"] == "standard"
    assert config.connect_timeout == 5


def test_copy_never_raises_for_a_plain_boto3_client_either(s3_server):
    plain = boto3.client("s3", region_name="us-east-1")
    make_buckets(plain)

    outcome = copy_object(plain, SOURCE, "missing", BACKUP, "missing")

    assert (outcome.status, outcome.error_code) == ("failed", "NoSuchKey")

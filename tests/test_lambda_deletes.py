"""Deletes: the backup keeps what the source lost, unless MIRROR_DELETES says otherwise."""

import pytest

from replication.lambda_function import mirror_delete
from tests.lambda_support import (
    BACKUP,
    SOURCE,
    answer_with_error,
    backup_keys,
    eventbridge_event,
    invoke,
    s3_event,
    s3_record,
    version_buckets,
)

pytestmark = pytest.mark.s3_backends


@pytest.fixture
def s3(s3):
    """The shared buckets, with a backup copy of doc.txt for the deletes to act on."""
    s3.put_object(Bucket=BACKUP, Key="doc.txt", Body=b"backup copy")
    return s3


def delete_event(key: str = "doc.txt", event_name: str = "ObjectRemoved:Delete") -> dict:
    return s3_event(s3_record(key, event_name=event_name))


def test_delete_keeps_backup_by_default_and_is_reported_skipped(s3, monkeypatch):
    result = invoke(monkeypatch, s3, delete_event())

    assert result == {"copied": 0, "skipped": 1, "deleted": 0, "failed": 0, "held": 0}
    assert backup_keys(s3) == ["doc.txt"]


def test_mirrored_delete_removes_backup_when_source_is_gone(s3, monkeypatch):
    result = invoke(monkeypatch, s3, delete_event(), MIRROR_DELETES="true")

    assert result["deleted"] == 1
    assert backup_keys(s3) == []


def test_mirrored_delete_keeps_backup_when_source_key_was_written_again(s3, monkeypatch):
    s3.put_object(Bucket=SOURCE, Key="doc.txt", Body=b"written again after the delete")

    result = invoke(monkeypatch, s3, delete_event(), MIRROR_DELETES="true")

    assert result["skipped"] == 1
    assert backup_keys(s3) == ["doc.txt"]


@pytest.fixture
def versioned(s3):
    """Both buckets versioned, the backup's copy of doc.txt removed (the tests write theirs)."""
    s3.delete_object(Bucket=BACKUP, Key="doc.txt")
    version_buckets(s3)
    return s3


def test_mirrored_delete_marker_removes_backup_when_no_current_version(versioned, monkeypatch):
    s3 = versioned
    s3.put_object(Bucket=SOURCE, Key="doc.txt", Body=b"v1")
    s3.put_object(Bucket=BACKUP, Key="doc.txt", Body=b"v1")
    s3.delete_object(Bucket=SOURCE, Key="doc.txt")  # leaves a delete marker

    result = invoke(
        monkeypatch,
        s3,
        delete_event(event_name="ObjectRemoved:DeleteMarkerCreated"),
        MIRROR_DELETES="true",
    )

    assert result["deleted"] == 1
    assert backup_keys(s3) == []


def test_mirrored_delete_of_one_old_version_keeps_backup_of_current_one(versioned, monkeypatch):
    s3 = versioned
    old = s3.put_object(Bucket=SOURCE, Key="doc.txt", Body=b"v1")["VersionId"]
    s3.put_object(Bucket=SOURCE, Key="doc.txt", Body=b"v2")
    s3.put_object(Bucket=BACKUP, Key="doc.txt", Body=b"v2")
    s3.delete_object(Bucket=SOURCE, Key="doc.txt", VersionId=old)

    result = invoke(monkeypatch, s3, delete_event(), MIRROR_DELETES="true")

    assert result["skipped"] == 1
    assert backup_keys(s3) == ["doc.txt"]


def test_eventbridge_lifecycle_expiration_is_mirrored_like_a_delete(s3, monkeypatch):
    event = eventbridge_event(
        "doc.txt",
        detail_type="Object Deleted",
        reason="Lifecycle Expiration",
        deletion_type="Permanently Deleted",
    )

    result = invoke(monkeypatch, s3, event, MIRROR_DELETES="true")

    assert result["deleted"] == 1
    assert backup_keys(s3) == []


def test_mirror_delete_without_proof_of_absence_deletes_nothing(s3):
    # Without s3:ListBucket, S3 answers 403 for a missing key: that proves nothing.
    answer_with_error(s3, "HeadObject", status=403, code="AccessDenied")

    outcome = mirror_delete(s3, SOURCE, "doc.txt", BACKUP, "doc.txt")

    assert (outcome.status, outcome.error_code) == ("failed", "AccessDenied")
    assert backup_keys(s3) == ["doc.txt"]


def test_mirrored_delete_honours_prefixes(s3, monkeypatch):
    s3.put_object(Bucket=BACKUP, Key="backup/logs/x.txt", Body=b"copy")

    result = invoke(
        monkeypatch,
        s3,
        delete_event("app/logs/x.txt"),
        MIRROR_DELETES="true",
        SOURCE_PREFIX="app/",
        DESTINATION_PREFIX="backup/",
    )

    assert result["deleted"] == 1
    assert backup_keys(s3) == ["doc.txt"]

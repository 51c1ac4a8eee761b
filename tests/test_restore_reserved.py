"""The reserved prefix at a backup bucket's root, where restores and drills write: reconcile
never lists or counts it."""

from datetime import UTC, datetime

import pytest

from replication.reconcile.diff import Entry
from replication.reconcile.listing import _without_reserved
from tests.factories import make_pair
from tests.reconcile_support import an_hour_ago, reconcile_now

SOURCE = "photos-src"
BACKUP = "photos-bak"


@pytest.fixture
def root_pair(db, s3):
    return make_pair(name="root", source_bucket=SOURCE, backup_bucket=BACKUP)


def test_reconcile_does_not_count_the_reserved_prefix_of_the_backup(s3, root_pair):
    with an_hour_ago():
        for bucket in (SOURCE, BACKUP):
            s3.put_object(Bucket=bucket, Key="-first", Body=b"x")
            s3.put_object(Bucket=bucket, Key="a.txt", Body=b"x")
        s3.put_object(Bucket=BACKUP, Key=".backupsite/drills/1/a.txt", Body=b"x")
        s3.put_object(Bucket=BACKUP, Key=".backupsite/restores/2/b.txt", Body=b"y")

    run = reconcile_now(root_pair)

    assert run.verdict == "in_sync"
    assert (run.destination_objects, run.extra) == (2, 0)


def test_a_source_key_under_the_reserved_prefix_is_still_compared(s3, root_pair):
    # Only the backup's reserved prefix is set aside; the source's keys are the pair's.
    with an_hour_ago():
        s3.put_object(Bucket=SOURCE, Key=".backupsite/mine.txt", Body=b"x")

    run = reconcile_now(root_pair)

    assert run.missing == 1


def _e(key: str) -> Entry:
    return Entry(key, 1, "e", datetime(2026, 1, 1, tzinfo=UTC))


def test_only_pages_spanning_the_reserved_keys_are_filtered():
    page = [_e(".a"), _e(".backupsite/x"), _e(".backupsite/y"), _e(".backupsitez"), _e("b")]
    untouched = [_e("a"), _e("b")]

    assert [e.key for e in _without_reserved(page)] == [".a", ".backupsitez", "b"]
    assert _without_reserved(untouched) is untouched

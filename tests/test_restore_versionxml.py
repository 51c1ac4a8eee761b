"""The lean ListObjectVersions parser reads what botocore's parser reads, on moto's answers."""

import pytest

from replication import s3 as s3_clients
from replication.reconcile.listing import Side
from replication.restore.listing import list_versions

BUCKET = "photos-bak"
KEYS = [
    "plain.txt",
    "space and+plus.txt",
    "percent%20 & amp <lt> 'q' \"dq\".txt",
    "résumé/東京 ✓.txt",
    "tab\tand\nnewline.txt",
    ".backupsite/drills/1/x",
    "k" * 1024,
]


@pytest.fixture
def versions(s3):
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for key in KEYS:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"one")
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"two")
    s3.delete_object(Bucket=BUCKET, Key="plain.txt")
    s3.put_object(Bucket=BUCKET, Key="multi", Body=b"x")


@pytest.mark.parametrize("page_size", [1000, 3])
def test_the_lean_parser_reads_every_entry_as_botocore_does(s3, versions, page_size, monkeypatch):
    monkeypatch.setattr("replication.restore.listing.PAGE_SIZE", page_size)
    side = Side("backup", BUCKET, "")

    lean = list(list_versions(s3_clients.listing_client(), side))
    plain = list(list_versions(s3_clients.client(), side))

    def comparable(entries):  # moto's order among one key's equal times is its own
        return sorted(entries, key=lambda v: (v.key, v.version_id))

    assert comparable(lean) == comparable(plain)
    assert len(lean) == 2 * (len(KEYS) - 1) + 1 + 1  # the reserved prefix is left out
    assert sum(v.is_delete_marker for v in lean) == 1
    assert [v.key for v in lean] == sorted(v.key for v in lean)


def test_the_lean_parser_keeps_the_prefix_it_is_told_to(s3, versions):
    side = Side("backup", BUCKET, "résumé/")

    lean = list(list_versions(s3_clients.listing_client(), side, strip=0))

    assert {v.key for v in lean} == {"résumé/東京 ✓.txt"}

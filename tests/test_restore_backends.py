"""Point-in-time restore against both S3 implementations, moto and LocalStack
(tests/s3_backends.py): a versioned backup with overwrites, deletes, delete markers, multipart
objects with irregular parts, a unicode key and a 1,024-byte key, restored to each moment of
its history, every object's bytes and ETag compared with what the source held then.

LocalStack stamps versions with the machine's clock, which time_machine cannot move: the
moments are taken from the versions' own LastModified, and each step of the history waits
until the clock has passed the previous one's.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest

from replication import s3 as s3_clients
from replication.models import RestoreJob
from replication.restore import job as restores
from tests.factories import make_pair
from tests.restore_support import PART, held, put_in_parts, versioned

pytestmark = pytest.mark.s3_backends

SOURCE = "site-src"
BACKUP = "site-bak"
SRC_PREFIX = "docs/"
BAK_PREFIX = "mirror/"
UNICODE = "résumé/naïve ✓ 東京.txt"
LONG = "long/" + "k" * (1024 - len(BAK_PREFIX) - len("long/"))  # 1,024 bytes in the backup
MOMENTS = 4


@pytest.fixture
def pair(db, s3):
    versioned(s3, SOURCE, BACKUP)
    for n in range(MOMENTS):
        s3.create_bucket(Bucket=f"restored-{n}")
    return make_pair(
        name="site",
        source_bucket=SOURCE,
        source_prefix=SRC_PREFIX,
        backup_bucket=BACKUP,
        backup_prefix=BAK_PREFIX,
    )


def newest_stamp(s3) -> datetime:
    """The newest LastModified among the backup's versions and delete markers."""
    stamps = [
        entry["LastModified"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=BACKUP)
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ]
    return max(stamps)


def wait_past(moment: datetime) -> None:
    # LastModified is in whole seconds (or milliseconds): a write a second after the moment
    # is stamped after it.
    while datetime.now(UTC) < moment + timedelta(seconds=1.05):
        time.sleep(0.05)


@pytest.fixture
def history(s3, pair):
    """Four moments of a backup, each the LastModified of its newest version, and for each
    what the source held then: key -> (bytes, ETag)."""
    moments, states = [], []
    state: dict[str, tuple[bytes, str]] = {}

    def put(key: str, body: bytes) -> None:
        etag = s3.put_object(Bucket=BACKUP, Key=BAK_PREFIX + key, Body=body)["ETag"].strip('"')
        state[key] = (body, etag)

    def put_parts(key: str, sizes: list[int], fill: bytes) -> None:
        state[key] = put_in_parts(s3, BACKUP, BAK_PREFIX + key, sizes, fill)

    def delete(key: str) -> None:
        s3.delete_object(Bucket=BACKUP, Key=BAK_PREFIX + key)  # a delete marker
        state.pop(key, None)

    def moment() -> None:
        moments.append(newest_stamp(s3))
        states.append(dict(state))
        wait_past(moments[-1])

    put("a.txt", b"one")
    put("gone.txt", b"soon deleted")
    put(UNICODE, b"u1")
    put(LONG, b"long key")
    put_parts("big.bin", [PART + 7, PART + 1, 333], b"first")
    moment()
    put("a.txt", b"two")
    delete("gone.txt")
    put("late.txt", b"late")
    moment()
    put_parts("big.bin", [PART + 3, 100], b"second")
    put(UNICODE, b"u2")
    delete("a.txt")
    moment()
    put("gone.txt", b"back")
    moment()
    return moments, states


def restore(pair, moment: datetime, target: str) -> RestoreJob:
    request = restores.make_request(pair, at=moment, to=target)
    totals = restores.count_plan(s3_clients.listing_client(), request)
    job = restores.create_job(request, totals)
    return restores.run_job(job.pk, s3=s3_clients.client(), threads=4)


def test_restore_to_each_moment_brings_back_every_object_as_the_source_held_it(s3, pair, history):
    moments, states = history
    assert len(set(moments)) == MOMENTS  # each step stamped after the one before

    for n, (moment, expected) in enumerate(zip(moments, states, strict=True)):
        job = restore(pair, moment, f"restored-{n}")

        assert job.status == RestoreJob.Status.SUCCEEDED, (n, job.error)
        assert held(s3, f"restored-{n}") == expected, n
        assert (job.restored, job.failed) == (len(expected), 0), n
        assert set(job.outcomes.values_list("verified_by", flat=True)) == {"etag"}, n
    assert [len(state) for state in states] == [5, 5, 4, 5]
    assert "-3" in states[0]["big.bin"][1] and "-2" in states[2]["big.bin"][1]


def test_the_plan_skips_keys_deleted_then_and_counts_keys_not_yet_written(s3, pair, history):
    moments, _ = history
    counted = []
    for moment in moments:
        request = restores.make_request(pair, at=moment, to="restored-0")
        totals = restores.count_plan(s3_clients.listing_client(), request)
        counted.append((totals.objects, totals.deleted, totals.absent))

    # gone.txt: deleted at the second moment, back at the fourth; a.txt deleted at the third;
    # late.txt written at the second.
    assert counted == [(5, 0, 1), (5, 1, 0), (4, 2, 0), (5, 1, 0)]

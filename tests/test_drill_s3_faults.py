"""Drill: S3 answering SlowDown, AccessDenied and NoSuchBucket, at botocore's edge (moto behind).

SlowDown on a share of every kind of call is retried by botocore's standard mode and the copy
or reconcile completes with exact counts; a denied or missing bucket gives a clear failure;
a delete that S3 refuses is never counted as deleted.
"""

import itertools
from datetime import timedelta

import pytest
import time_machine
from botocore.awsrequest import AWSResponse
from django.utils import timezone

from replication import s3 as s3_clients
from replication.lambda_function import ReplicationFailed
from replication.models import ReconcileRun
from replication.reconcile import inline
from replication.reconcile import run as reconcile
from tests.factories import make_pair
from tests.lambda_support import (
    BACKUP,
    SOURCE,
    answer_with_error,
    backup_keys,
    invoke,
    put_event,
    s3_event,
    s3_record,
)

OBJECTS = 30
ERROR_DENIED = (
    f"access denied to source bucket '{SOURCE}': the credentials need s3:ListBucket on it"
)


class _Body:
    def __init__(self, raw: bytes):
        self.raw = raw

    def stream(self, **_):
        yield self.raw


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def slow_down_every(client, nth: int) -> list[str]:
    """Answer every ``nth`` request the client sends with 503 SlowDown, before moto sees it."""
    answered: list[str] = []
    sends = itertools.count(1)

    def answer(request, **_):
        if next(sends) % nth:
            return None
        answered.append(request.url)
        return AWSResponse(request.url, 503, {}, _Body(SLOW_DOWN))

    client.meta.events.register_first("before-send.s3", answer)
    return answered


@pytest.fixture
def pair(db, s3):
    return make_pair(name="drill", source_bucket=SOURCE, backup_bucket=BACKUP, grace_seconds=60)


def old_objects(s3, bucket: str, keys, body: bytes = b"data") -> None:
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=True):
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=body)


def reconcile_now(pair, **options) -> ReconcileRun:
    run, _ = reconcile.request_run(pair, **options)
    inline.reconcile_inline(run.pk)
    run.refresh_from_db()
    return run


# --- SlowDown on a share of the calls ---------------------------------------------------------


def test_lambda_copies_every_object_while_a_third_of_its_calls_are_throttled(s3, monkeypatch):
    records = [
        put_event(s3, f"k{n:02d}", f"body {n}".encode())["Records"][0] for n in range(OBJECTS)
    ]
    throttled = slow_down_every(s3, 3)

    result = invoke(monkeypatch, s3, s3_event(*records))

    assert len(throttled) >= OBJECTS // 3
    assert result == {"copied": OBJECTS, "skipped": 0, "deleted": 0, "failed": 0, "held": 0}
    assert backup_keys(s3) == [f"k{n:02d}" for n in range(OBJECTS)]


def test_reconcile_and_repair_give_exact_counts_while_a_third_of_calls_are_throttled(s3, pair):
    keys = [f"k{n:02d}" for n in range(OBJECTS)]
    old_objects(s3, SOURCE, keys)
    old_objects(s3, BACKUP, keys[:20])  # 10 missing
    old_objects(s3, BACKUP, ["zz-extra"])
    throttled = slow_down_every(s3_clients.client(pair.region), 3)

    found = reconcile_now(pair, repair=True)
    after = reconcile_now(pair)

    assert throttled, "the drill injected no SlowDown"
    assert (found.status, found.missing, found.extra, found.in_sync) == ("succeeded", 10, 1, 20)
    assert (found.repaired, found.repair_failed) == (10, 0)
    assert (after.status, after.missing, after.in_sync, after.extra) == ("succeeded", 0, 30, 1)


# --- Denied and missing buckets ---------------------------------------------------------------


def test_a_denied_listing_fails_the_run_with_a_clear_reason(s3, pair):
    for client in (s3_clients.client(pair.region), s3_clients.listing_client(pair.region)):
        answer_with_error(client, "ListObjectsV2", status=403, code="AccessDenied")
    run = reconcile_now(pair)
    assert run.status == "failed"
    assert run.error == ERROR_DENIED


def test_a_missing_bucket_fails_the_run_naming_it(s3, pair):
    s3.delete_bucket(Bucket=SOURCE)
    run = reconcile_now(pair)
    assert (run.status, run.error) == ("failed", f"source bucket '{SOURCE}' does not exist")


def test_a_copy_into_a_missing_backup_bucket_fails_with_no_such_bucket(s3, monkeypatch, caplog):
    event = put_event(s3, "a.txt")
    s3.delete_bucket(Bucket=BACKUP)
    with pytest.raises(ReplicationFailed, match="1 of 1 records failed"):
        invoke(monkeypatch, s3, event)
    assert '"error_code": "NoSuchBucket"' in caplog.text


def test_a_denied_delete_in_repair_is_failed_never_counted_as_deleted(s3, pair):
    pair.mirror_deletes = True
    pair.save()
    old_objects(s3, SOURCE, ["kept"])  # a repair never deletes after an empty source listing
    old_objects(s3, BACKUP, ["extra-1", "extra-2", "kept"])
    answer_with_error(
        s3_clients.client(pair.region), "DeleteObject", status=403, code="AccessDenied"
    )

    run = reconcile_now(pair, repair=True)

    assert (run.extra, run.repaired, run.repair_failed) == (2, 0, 2)
    rows = list(run.discrepancies.values_list("repaired", "repair_outcome", "repair_error"))
    assert all(not repaired and outcome == "failed" for repaired, outcome, _ in rows)
    assert all("AccessDenied" in error for _, _, error in rows)
    assert sorted(backup_keys(s3)) == ["extra-1", "extra-2", "kept"]


def test_a_denied_delete_in_the_lambda_is_failed_never_deleted(s3, monkeypatch):
    s3.put_object(Bucket=BACKUP, Key="gone.txt", Body=b"x")
    answer_with_error(s3, "DeleteObject", status=403, code="AccessDenied")
    event = s3_event(s3_record("gone.txt", event_name="ObjectRemoved:Delete"))

    with pytest.raises(ReplicationFailed, match="1 of 1 records failed"):
        invoke(monkeypatch, s3, event, MIRROR_DELETES="true")

    assert backup_keys(s3) == ["gone.txt"]

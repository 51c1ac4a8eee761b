"""Settling: objects a run found in flight are checked again once their grace has passed."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from replication import tasks
from replication.models import ObjectState, ReconcileRun
from replication.models.events import Finding
from replication.reconcile import settle
from tests.reconcile_support import an_hour_ago, prefixed_pair, reconcile_now

SOURCE, BACKUP = "settle-src", "settle-bak"
SRC_PREFIX, BAK_PREFIX = "live/", "copies/"


@pytest.fixture
def docs(db, s3):
    return prefixed_pair(SOURCE, BACKUP, SRC_PREFIX, BAK_PREFIX)


def put(s3, bucket: str, key: str, body: bytes = b"same") -> None:
    prefix = SRC_PREFIX if bucket == SOURCE else BAK_PREFIX
    s3.put_object(Bucket=bucket, Key=prefix + key, Body=body)


def copy_to_backup(s3, key: str) -> None:
    s3.copy_object(Bucket=BACKUP, Key=BAK_PREFIX + key, CopySource=f"{SOURCE}/{SRC_PREFIX}{key}")


def after_grace(pair):
    return timezone.now() + pair.grace_period + timedelta(seconds=1)


def frozen(run: ReconcileRun) -> tuple:
    return (run.verdict, run.missing, run.in_flight, run.in_sync, run.mismatched)


def test_in_flight_objects_settle_in_sync_or_missing_once_their_grace_has_passed(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "old")
        put(s3, BACKUP, "old")
    put(s3, SOURCE, "copied-later")
    put(s3, SOURCE, "never-copied")
    run = reconcile_now(docs)
    assert (run.in_flight, run.verdict) == (2, "in_sync")
    before = frozen(run)
    copy_to_backup(s3, "copied-later")

    assert settle.settle_run(run, now=timezone.now()) == (0, 0)  # grace not yet passed
    assert settle.settle_run(run, now=after_grace(docs)) == (1, 1)

    run.refresh_from_db()
    assert frozen(run) == before  # a finished run's counts and verdict never change
    assert (run.settled_in_sync, run.settled_missing) == (1, 1)
    assert run.settled_at is not None
    lacking = ObjectState.objects.get(pair=docs, key=SRC_PREFIX + "never-copied")
    assert (lacking.finding, lacking.finding_run_id) == (Finding.MISSING, run.pk)
    assert lacking.lacking_since is not None
    assert list(ObjectState.objects.lacking().values_list("key", flat=True)) == [
        SRC_PREFIX + "never-copied"
    ]
    assert set(run.discrepancies.values_list("key", "settled")) == {
        (SRC_PREFIX + "copied-later", "in_sync"),
        (SRC_PREFIX + "never-copied", "missing"),
    }


def test_settling_twice_counts_once(s3, docs):
    put(s3, SOURCE, "never-copied")
    run = reconcile_now(docs)
    settle.settle_run(run, now=after_grace(docs))
    settle.settle_run(run, now=after_grace(docs))
    run.refresh_from_db()
    assert (run.settled_in_sync, run.settled_missing) == (0, 1)


def test_an_object_overwritten_or_deleted_since_the_run_is_gone_not_missing(s3, docs):
    put(s3, SOURCE, "rewritten", b"listed")
    put(s3, SOURCE, "deleted")
    run = reconcile_now(docs)
    put(s3, SOURCE, "rewritten", b"written after the listing")
    s3.delete_object(Bucket=SOURCE, Key=SRC_PREFIX + "deleted")

    settle.settle_run(run, now=after_grace(docs))

    run.refresh_from_db()
    assert (run.settled_in_sync, run.settled_missing) == (0, 0)
    assert run.settled_at is not None
    assert set(run.discrepancies.values_list("settled", flat=True)) == {"gone"}
    assert not ObjectState.objects.lacking().exists()


def test_rows_beyond_the_cap_wait_for_the_next_reconcile(s3, docs, settings):
    settings.RECONCILE_MAX_DISCREPANCY_ROWS = 1
    put(s3, SOURCE, "a")
    put(s3, SOURCE, "b")
    run = reconcile_now(docs)
    assert (run.in_flight, run.discrepancies.count()) == (2, 1)

    settle.settle_run(run, now=after_grace(docs))

    run.refresh_from_db()
    assert (run.settled_in_sync + run.settled_missing, run.in_flight) == (1, 2)
    assert run.settled_at is not None  # nothing stored is left to settle


def test_the_next_reconcile_of_the_pair_settles_earlier_runs_first(s3, docs):
    put(s3, SOURCE, "young")
    first = reconcile_now(docs)
    # The grace passes (the object is an hour old by the next run).
    ReconcileRun.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=2))
    first.discrepancies.update(source_last_modified=timezone.now() - timedelta(hours=1))

    reconcile_now(docs)

    first.refresh_from_db()
    assert (first.settled_missing, first.settled_at is not None) == (1, True)


def test_beat_settles_every_pair_each_minute(s3, docs):
    put(s3, SOURCE, "young")
    run = reconcile_now(docs)
    run.discrepancies.update(source_last_modified=timezone.now() - timedelta(hours=1))

    assert tasks.settle_in_flight.delay().get() == {"in_sync": 0, "missing": 1}

    entry = django_settings.CELERY_BEAT_SCHEDULE["settle-in-flight"]
    assert entry["task"] == "replication.tasks.settle_in_flight"
    assert entry["options"]["expires"] < entry["schedule"] == 60.0


def test_the_run_page_says_how_its_in_flight_objects_settled(s3, docs, client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("viewer", password="pw"))
    run = ReconcileRun.objects.create(
        pair=docs,
        status="succeeded",
        verdict="in_sync",
        started_at=timezone.now(),
        finished_at=timezone.now(),
        in_flight=12,
        settled_in_sync=11,
        settled_missing=1,
        settled_at=timezone.now(),
    )

    body = client.get(f"/runs/{run.pk}/").content.decode()

    assert "12 in flight, settled: 11 in sync, 1 missing" in body

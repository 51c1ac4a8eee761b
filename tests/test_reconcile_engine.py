"""The reconcile engine under stress: verdict rules, repair past the row cap, encryption,
runs that stay alive while they work, one lock order, deadlocks retried, long ETags."""

import threading
import time
from datetime import timedelta

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from replication.models import Discrepancy, ObjectState, ReconcileRange, ReconcileRun
from replication.models.events import Finding
from replication.reconcile import checksums, heartbeat, reaper, verify, writer
from replication.reconcile import repair as repair_module
from replication.reconcile import run as reconcile
from replication.reconcile.diff import MISMATCHED, MISSING, Difference, Entry
from replication.reconcile.repair import Repaired, repairing
from replication.reconcile.verdict import UNPROVEN, verdict
from tests.reconcile_support import an_hour_ago, failed_copy, found, prefixed_pair, reconcile_now
from tests.test_reconcile_checksums import KMS_ETAG, give_kms_etag

SOURCE, BACKUP = "engine-src", "engine-bak"
SRC_PREFIX, BAK_PREFIX = "live/", "copies/"


@pytest.fixture
def docs(db, s3):
    return prefixed_pair(SOURCE, BACKUP, SRC_PREFIX, BAK_PREFIX)


@pytest.fixture
def mirror(docs):
    docs.mirror_deletes = True
    docs.save(update_fields=["mirror_deletes"])
    return docs


def put(s3, bucket: str, key: str, body: bytes = b"same", **extra) -> None:
    prefix = SRC_PREFIX if bucket == SOURCE else BAK_PREFIX
    s3.put_object(Bucket=bucket, Key=prefix + key, Body=body, **extra)


def in_backup(s3, key: str) -> bool:
    listed = s3.list_objects_v2(Bucket=BACKUP, Prefix=BAK_PREFIX + key)
    return any(o["Key"] == BAK_PREFIX + key for o in listed.get("Contents", []))


# --- Verdict rules -----------------------------------------------------------------------------


def test_a_young_object_whose_copy_failed_is_missing_not_in_flight(s3, docs):
    put(s3, SOURCE, "failed.txt")  # young: within the pair's grace
    put(s3, SOURCE, "fresh.txt")  # young, no failure on record: in flight
    failed_copy(docs, "failed.txt", timezone.now())

    run = reconcile_now(docs)

    assert (run.missing, run.in_flight, run.verdict) == (1, 1, "out_of_sync")
    assert found(run) == {"missing": {"failed.txt"}, "in_flight": {"fresh.txt"}}


def test_a_failed_copy_stays_missing_at_the_next_run_within_its_grace(s3, docs):
    put(s3, SOURCE, "failed.txt")
    failed_copy(docs, "failed.txt", timezone.now())
    first = reconcile_now(docs)  # its finding closes the failure; the backup still lacks it

    again = reconcile_now(docs)

    assert (first.missing, again.missing, again.in_flight) == (1, 1, 0)
    assert again.verdict == "out_of_sync"


def test_a_young_changed_object_whose_copy_failed_is_mismatched_not_in_flight(s3, docs):
    put(s3, BACKUP, "doc.txt", b"old content")
    put(s3, SOURCE, "doc.txt", b"new content!")
    failed_copy(docs, "doc.txt", timezone.now())

    run = reconcile_now(docs)

    assert (run.mismatched, run.in_flight, run.verdict) == (1, 0, "out_of_sync")


def test_an_empty_source_beside_a_backup_with_objects_is_unproven_not_in_sync(s3, docs):
    with an_hour_ago():
        put(s3, BACKUP, "a")
        put(s3, BACKUP, "b")

    run = reconcile_now(docs)

    assert (run.source_objects, run.extra, run.verdict) == (0, 2, UNPROVEN)


@pytest.mark.parametrize("mirror_deletes", [False, True])
def test_an_empty_source_is_unproven_before_the_extras_rule(mirror_deletes):
    counts = {"missing": 0, "mismatched": 0, "extra": 3, "unverified": 0}
    empty = verdict(
        **counts, mirror_deletes=mirror_deletes, source_objects=0, destination_objects=3
    )
    assert empty == UNPROVEN
    both_empty = verdict(**counts | {"extra": 0}, mirror_deletes=mirror_deletes, source_objects=0)
    assert both_empty == "in_sync"


def test_a_repair_never_deletes_extras_when_the_source_listing_is_empty(s3, mirror):
    with an_hour_ago():
        put(s3, BACKUP, "a")

    run = reconcile_now(mirror, repair=True)

    assert in_backup(s3, "a")
    assert (run.extras_deleted, run.verdict) == (0, UNPROVEN)


# --- Repair reaches every object ---------------------------------------------------------------


def test_repair_copies_a_missing_object_behind_extras_that_fill_the_row_cap(s3, docs, settings):
    settings.RECONCILE_MAX_DISCREPANCY_ROWS = 5
    with an_hour_ago():
        for n in range(6):
            put(s3, BACKUP, f"a{n}")
        put(s3, SOURCE, "z-missing")

    runs = [reconcile_now(docs, repair=True)]

    assert in_backup(s3, "z-missing")
    first = runs[0]
    assert (first.missing, first.extra, first.repaired, first.repaired_missing) == (1, 6, 1, 1)
    assert first.discrepancies_stored == 5
    assert first.verdict == "in_sync"  # the pair keeps what the source deleted
    again = reconcile_now(docs, repair=True)
    assert (again.missing, again.repaired) == (0, 0)


def test_extras_deleted_by_a_repair_get_a_finding(s3, mirror):
    with an_hour_ago():
        put(s3, SOURCE, "kept")
        put(s3, BACKUP, "kept")
        put(s3, BACKUP, "gone")

    run = reconcile_now(mirror, repair=True)

    assert not in_backup(s3, "gone")
    assert (run.extra, run.extras_deleted, run.verdict) == (1, 1, "in_sync")
    state = ObjectState.objects.get(pair=mirror, key=SRC_PREFIX + "gone")
    assert (state.finding, state.finding_run_id) == (Finding.DELETED, run.pk)


def test_repair_counts_are_saved_on_the_run_as_it_copies(s3, docs, monkeypatch, settings):
    settings.RECONCILE_PROGRESS_SECONDS = 0  # every beat saves
    with an_hour_ago():
        for n in range(3):
            put(s3, SOURCE, f"m{n}")
    saved = []
    real_beat = heartbeat.Heartbeat.beat

    def beat(self, scanned, *, force=False):
        real_beat(self, scanned, force=force)
        saved.append(
            ReconcileRun.objects.values_list("repair_total", "repaired").get(id=self.run_id)
        )

    monkeypatch.setattr(heartbeat.Heartbeat, "beat", beat)
    run = reconcile_now(docs, repair=True)

    assert (run.repair_total, run.repaired, run.repaired_missing) == (3, 3, 3)
    # Saved by the range's heartbeat, before the run's end sets them from the ranges.
    assert (3, 3) in saved


def test_a_long_copy_keeps_calling_back_while_it_runs():
    source = Entry("big.bin", 10, "e" * 32, timezone.now())
    difference = Difference(MISSING, "big.bin", source, None)
    waits = []

    def slow_copy(s3, pair, difference):
        time.sleep(0.35)
        return Repaired("copied")

    original = repair_module.copy_difference
    repair_module.copy_difference = slow_copy
    try:
        out = list(
            repairing(
                [difference],
                s3=None,
                pair=None,
                threads=1,
                on_wait=lambda: waits.append(threading.current_thread().name),
                wait_seconds=0.05,
            )
        )
    finally:
        repair_module.copy_difference = original

    assert out == [(difference, Repaired("copied"))]
    # Called on the caller's thread, which owns the run's database connection.
    assert len(waits) >= 3 and set(waits) == {threading.current_thread().name}


def test_a_run_whose_repair_copies_one_large_object_keeps_its_heartbeat(
    s3, docs, monkeypatch, settings
):
    settings.RECONCILE_PROGRESS_SECONDS = 1
    with an_hour_ago():
        put(s3, SOURCE, "huge.bin")
    beats_during_copy = []
    copying = threading.Event()
    real_beat = heartbeat.Heartbeat.beat

    def beat(self, scanned, *, force=False):
        if copying.is_set():
            beats_during_copy.append(force)
        real_beat(self, scanned, force=force)

    def slow_copy(s3_client, pair, difference):
        copying.set()
        time.sleep(2.5)
        copying.clear()
        return Repaired("copied")

    monkeypatch.setattr(heartbeat.Heartbeat, "beat", beat)
    monkeypatch.setattr(repair_module, "copy_difference", slow_copy)
    run = reconcile_now(docs, repair=True)

    assert run.status == "succeeded" and run.repaired == 1
    assert len(beats_during_copy) >= 2


# --- Encryption: ETags that are not MD5s -------------------------------------------------------


def plain_client(s3):
    """A client that sends no checksum with a PUT, so moto stores none (as objects written
    before S3's default checksums, or by other tools, have none)."""
    return boto3.client(
        "s3",
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required"),
    )


def test_a_kms_backup_without_checksums_is_unverified_never_mismatched(s3, docs):
    plain = plain_client(s3)
    with an_hour_ago():
        put(plain, SOURCE, "doc.txt", b"same bytes")
        put(plain, BACKUP, "doc.txt", b"same bytes", ServerSideEncryption="aws:kms")
    give_kms_etag(BACKUP, BAK_PREFIX + "doc.txt")

    run = reconcile_now(docs)

    assert (run.mismatched, run.unverified, run.verdict) == (0, 1, UNPROVEN)
    assert found(run) == {"unverified": {"doc.txt"}}
    assert run.discrepancies.get().backup_etag == KMS_ETAG
    # A repair leaves it alone instead of copying it again at every run.
    repaired = reconcile_now(docs, repair=True)
    assert (repaired.repair_total, repaired.repaired, repaired.unverified) == (0, 0, 1)


def test_a_kms_source_with_different_sizes_is_still_mismatched(s3, docs):
    plain = plain_client(s3)
    with an_hour_ago():
        put(plain, SOURCE, "doc.txt", b"longer bytes", ServerSideEncryption="aws:kms")
        put(plain, BACKUP, "doc.txt", b"short")

    run = reconcile_now(docs)

    assert (run.mismatched, run.unverified) == (1, 0)


def test_head_reads_kms_and_customer_key_encryption_as_etags_that_are_not_md5s():
    assert not checksums.from_head({"ETag": '"x"', "ServerSideEncryption": "aws:kms"}).etag_is_md5
    assert not checksums.from_head({"ETag": '"x"', "SSECustomerAlgorithm": "AES256"}).etag_is_md5
    assert checksums.from_head({"ETag": '"x"', "ServerSideEncryption": "AES256"}).etag_is_md5


def test_an_object_whose_head_is_refused_with_400_is_taken_as_sse_c():
    class SseC:
        def head_object(self, **_):
            error = {"Error": {"Code": "400", "Message": "Bad Request"}}
            raise ClientError(error | {"ResponseMetadata": {"HTTPStatusCode": 400}}, "HeadObject")

    listed = Entry("k", 5, "a" * 32, timezone.now())
    head = verify.head_checksum(SseC(), "bucket", "k", [], listed)
    assert (head.etag, head.size, head.etag_is_md5) == (listed.etag, 5, False)
    backup = Entry("k", 5, "b" * 32, timezone.now())
    same_size = Difference(MISMATCHED, "k", listed, backup)
    plain = checksums.ObjectChecksum(backup.etag, 5)
    assert checksums.settle(same_size, head, plain) == "unverified"


# --- Runs alive while they wait; the reaper fails only dead ones -------------------------------


def a_running_run(pair, *, silent_for: timedelta, ranges: list[str]) -> ReconcileRun:
    then = timezone.now() - silent_for
    run = ReconcileRun.objects.create(
        pair=pair, status="running", started_at=then, heartbeat_at=then, ranges_total=len(ranges)
    )
    for index, status in enumerate(ranges):
        ReconcileRange.objects.create(run=run, index=index, status=status, heartbeat_at=then)
    return run


def test_a_run_whose_ranges_wait_in_the_queue_is_alive(docs, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # a broker holds the range tasks
    run = a_running_run(docs, silent_for=timedelta(minutes=20), ranges=["succeeded", "queued"])

    assert reaper.reap_stalled_runs() == []
    assert ReconcileRun.objects.get(pk=run.pk).status == "running"


def test_a_run_whose_ranges_waited_past_the_queued_timeout_fails_with_why(docs, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    run = a_running_run(docs, silent_for=timedelta(hours=2), ranges=["succeeded", "queued"])

    assert reaper.reap_stalled_runs() == [run.pk]
    assert "waited 60 minutes in the queue" in ReconcileRun.objects.get(pk=run.pk).error


def test_a_run_with_a_silent_range_is_reaped_even_while_others_wait(docs, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    run = a_running_run(docs, silent_for=timedelta(minutes=20), ranges=["running", "queued"])

    assert reaper.reap_stalled_runs() == [run.pk]
    assert "stopped reporting" in ReconcileRun.objects.get(pk=run.pk).error


def test_without_a_broker_a_queued_range_does_not_keep_a_dead_run(docs, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # nothing waits in a queue in-process
    run = a_running_run(docs, silent_for=timedelta(minutes=20), ranges=["queued"])

    assert reaper.reap_stalled_runs() == [run.pk]


# --- One lock order, deadlocks retried ---------------------------------------------------------


def tables_in_order(queries) -> list[str]:
    """The run and range tables in the order statements first touch them (a statement
    touches first the table it names first)."""
    order = []
    for query in queries:
        named = {t: query["sql"].find(f'"{t}"') for t in ("replication_reconcilerun", RANGES)}
        named = {table: at for table, at in named.items() if at >= 0}
        if named:
            first = min(named, key=named.get)
            if first not in order:
                order.append(first)
    return order


RANGES = "replication_reconcilerange"


def test_a_range_is_claimed_and_recorded_done_locking_the_run_before_the_range(s3, docs):
    run, _ = reconcile.request_run(docs)
    reconcile.claim_run(run.pk)

    with CaptureQueriesContext(connection) as claiming:
        key_range = reconcile.claim_range(run.pk, 0)
    with CaptureQueriesContext(connection) as recording:
        reconcile._record_range_done(key_range, {}, [])

    assert tables_in_order(claiming.captured_queries)[0] == "replication_reconcilerun"
    assert tables_in_order(recording.captured_queries) == [
        "replication_reconcilerun",
        "replication_reconcilerange",
    ]


def test_failing_a_run_locks_the_run_before_its_ranges(s3, docs):
    run, _ = reconcile.request_run(docs)
    reconcile.claim_run(run.pk)
    with CaptureQueriesContext(connection) as failing:
        reaper.fail_run(run.pk, "stopped")
    assert tables_in_order(failing.captured_queries) == [
        "replication_reconcilerun",
        "replication_reconcilerange",
    ]


def test_a_deadlock_recording_a_range_done_is_retried_and_the_run_finishes(s3, docs, monkeypatch):
    with an_hour_ago():
        put(s3, SOURCE, "a")
    real = reconcile._record_range_done
    calls = []

    def deadlock_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise OperationalError("deadlock detected\nDETAIL: Process 1 waits for ShareLock")
        return real(*args)

    monkeypatch.setattr(reconcile, "_record_range_done", deadlock_once)
    run = reconcile_now(docs)

    assert len(calls) == 2
    assert (run.status, run.missing) == ("succeeded", 1)


def test_an_error_that_is_not_a_deadlock_is_not_retried():
    from replication.reconcile.locks import retrying_deadlocks

    calls = []

    def broken():
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        retrying_deadlocks(broken, what="test")
    assert len(calls) == 1


# --- ETags of any length -----------------------------------------------------------------------


@pytest.mark.postgres
def test_a_long_etag_from_an_s3_compatible_server_is_stored(docs):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL; CI does): SQLite ignores lengths")
    long_etag = "f" * 64 + "-" + "9" * 200  # some servers return far longer ETags than AWS
    now = timezone.now()
    source = Entry("k", 1, long_etag, now)
    backup = Entry("k", 2, long_etag[::-1], now)
    run = ReconcileRun.objects.create(pair=docs)
    rows = writer.DiscrepancyWriter(run, range_index=0)
    rows.add(Difference(MISMATCHED, "k", source, backup))
    rows.flush()

    stored = Discrepancy.objects.get(run=run)
    assert (stored.source_etag, stored.backup_etag) == (long_etag, long_etag[::-1])


# --- The pure rules, directly ------------------------------------------------------------------


def test_the_merge_asks_about_failed_copies_only_for_young_differing_keys_in_key_order():
    from replication.reconcile.diff import IN_FLIGHT, diff

    now = timezone.now()
    young, old = now, now - timedelta(hours=2)
    source = [
        Entry("a", 1, "x" * 32, old),
        Entry("b", 1, "x" * 32, young),
        Entry("c", 1, "x" * 32, young),
        Entry("d", 1, "y" * 32, young),
    ]
    backup = [Entry("d", 1, "x" * 32, old)]
    asked = []

    def copy_failed(key):
        asked.append(key)
        return key in ("c", "d")

    kinds = {
        d.key: d.kind
        for d in diff(
            source, backup, in_flight_after=now - timedelta(hours=1), copy_failed=copy_failed
        )
    }

    assert kinds == {"a": MISSING, "b": IN_FLIGHT, "c": MISSING, "d": MISMATCHED}
    assert asked == ["b", "c", "d"]


Head = checksums.ObjectChecksum


@pytest.mark.parametrize(
    ("source", "backup", "expected"),
    [
        (None, None, "gone"),
        (Head("other", 5), None, "gone"),  # overwritten since the run
        (Head("a" * 32, 5), None, "missing"),
        (Head("a" * 32, 5), Head("a" * 32, 5), "in_sync"),
        (
            Head("a" * 32, 5),
            Head("b" * 32, 5),
            "mismatched",
        ),
        (
            Head("a" * 32, 5),
            Head("a" * 32, 6),
            "mismatched",
        ),
        (
            Head("a" * 32, 5),
            Head("b" * 32, 5, etag_is_md5=False),
            "unverified",
        ),
        (
            Head("a" * 32, 5, "CRC32", "q", "FULL_OBJECT"),
            Head("b" * 32, 5, "CRC32", "q", "FULL_OBJECT", False),
            "in_sync",
        ),
    ],
)
def test_how_an_in_flight_object_settles(source, backup, expected):
    assert checksums.settled_as("a" * 32, source, backup) == expected

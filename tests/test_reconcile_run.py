"""A whole reconcile against moto and LocalStack: categories, prefixes, ranges, caps, repair,
progress."""

import base64
import hashlib
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from django.utils import timezone

from replication.models import Discrepancy, ReconcileRun
from replication.reconcile import inline, listing, reaper, writer
from replication.reconcile import repair as repair_module
from replication.reconcile import run as reconcile
from tests.factories import make_pair
from tests.reconcile_support import an_hour_ago, found, prefixed_pair, reconcile_now
from tests.s3_backends import differs_from_s3

pytestmark = pytest.mark.s3_backends

SOURCE, BACKUP = "rec-src", "rec-bak"
SRC_PREFIX, BAK_PREFIX = "live/", "copies/live/"
MiB = 1024 * 1024


@pytest.fixture
def docs(db, s3):
    return prefixed_pair(SOURCE, BACKUP, SRC_PREFIX, BAK_PREFIX)


def put_source(s3, key: str, body: bytes = b"same") -> None:
    s3.put_object(Bucket=SOURCE, Key=SRC_PREFIX + key, Body=body)


def put_backup(s3, key: str, body: bytes = b"same") -> None:
    s3.put_object(Bucket=BACKUP, Key=BAK_PREFIX + key, Body=body)


def put_both(s3, key: str, body: bytes = b"same") -> None:
    put_source(s3, key, body)
    put_backup(s3, key, body)


def counts(run: ReconcileRun) -> dict[str, int]:
    names = ["source_objects", "destination_objects", "in_sync", "missing", "extra"]
    names += ["mismatched", "unverified", "in_flight", "source_bytes", "destination_bytes"]
    return {name: getattr(run, name) for name in names}


PARTS = [b"a" * 5 * MiB, b"b" * 10]


def upload_in_parts(s3, bucket: str, key: str) -> str:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for number, body in enumerate(PARTS, start=1):
        part = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    return done["ETag"]


def test_reconcile_finds_every_category_and_records_each_key(s3, docs):
    with an_hour_ago():
        put_both(s3, "same.txt")
        put_source(s3, "missing.txt")
        put_backup(s3, "extra.txt")
        put_source(s3, "changed-content.txt", b"new!")
        put_backup(s3, "changed-content.txt", b"old!")
        put_source(s3, "changed-size.txt", b"longer")
        put_backup(s3, "changed-size.txt", b"short")
        etag = upload_in_parts(s3, SOURCE, SRC_PREFIX + "big.bin")
        # The same bytes in one part, checksummed by another algorithm: nothing decides.
        put_backup(s3, "big.bin", b"".join(PARTS))
    put_source(s3, "just-written.txt")

    run = reconcile_now(docs)

    assert "-" in etag
    assert run.status == ReconcileRun.Status.SUCCEEDED
    assert found(run) == {
        "missing": {"missing.txt"},
        "extra": {"extra.txt"},
        "mismatched": {"changed-content.txt", "changed-size.txt"},
        "unverified": {"big.bin"},
        "in_flight": {"just-written.txt"},
    }
    assert (run.missing, run.extra, run.mismatched, run.unverified, run.in_flight) == (
        1,
        1,
        2,
        1,
        1,
    )
    assert (run.source_objects, run.destination_objects, run.in_sync) == (6, 5, 1)
    assert run.objects_scanned == 11
    assert run.started_at <= run.finished_at


def test_a_copy_of_a_multipart_source_is_proved_in_sync_by_its_checksum(s3, docs, request):
    differs_from_s3(
        request, "moto", "gives a multipart upload no checksum (S3: a full-object CRC64NVME)"
    )
    with an_hour_ago():
        upload_in_parts(s3, SOURCE, SRC_PREFIX + "big.bin")
        s3.copy_object(
            Bucket=BACKUP, Key=BAK_PREFIX + "big.bin", CopySource=f"{SOURCE}/{SRC_PREFIX}big.bin"
        )

    run = reconcile_now(docs)

    assert (run.in_sync, run.unverified) == (1, 0)


def declared_digest(header: str, body: bytes) -> dict[str, str]:
    digest = hashlib.md5(body) if header == "ContentMD5" else hashlib.sha256(body)  # noqa: S324
    return {header: base64.b64encode(digest.digest()).decode()}


@pytest.mark.parametrize("header", ["ChecksumSHA256", "ContentMD5"])
def test_a_backup_write_whose_digest_lies_is_refused_and_found_missing(s3, docs, request, header):
    # Reconcile trusts what S3 stored: equal SHA-256 checksums prove a same-size pair in sync
    # (replication/reconcile/checksums.py), and a copy that arrived damaged must not be there.
    differs_from_s3(request, "moto", f"stores an object whose {header} does not match its bytes")
    with an_hour_ago():
        put_source(s3, "k", b"real")
        with pytest.raises(ClientError) as refused:
            s3.put_object(
                Bucket=BACKUP,
                Key=BAK_PREFIX + "k",
                Body=b"fake",
                **declared_digest(header, b"real"),
            )

    assert refused.value.response["Error"]["Code"] == "BadDigest"
    run = reconcile_now(docs)
    assert found(run) == {"missing": {"k"}}


def test_discrepancy_rows_keep_both_sides_of_a_mismatch(s3, docs):
    with an_hour_ago():
        put_source(s3, "k", b"longer")
        put_backup(s3, "k", b"short")
    row = reconcile_now(docs).discrepancies.get()
    # The source key as S3 names it, prefix included: the one convention for people.
    assert (row.kind, row.key) == ("mismatched", SRC_PREFIX + "k")
    assert (row.source_size, row.backup_size) == (6, 5)
    assert row.source_etag and row.backup_etag and row.source_etag != row.backup_etag
    assert row.source_last_modified and row.backup_last_modified


def test_keys_outside_the_pairs_prefixes_are_not_compared(s3, docs):
    with an_hour_ago():
        put_both(s3, "a")
        s3.put_object(Bucket=SOURCE, Key="other/a", Body=b"x")
        s3.put_object(Bucket=SOURCE, Key="live-old/a", Body=b"x")
        s3.put_object(Bucket=BACKUP, Key="a", Body=b"x")
    run = reconcile_now(docs)
    assert (run.source_objects, run.destination_objects, run.differences) == (1, 1, 0)


def test_empty_buckets_reconcile_to_nothing(s3, docs):
    run = reconcile_now(docs)
    assert run.status == ReconcileRun.Status.SUCCEEDED
    assert run.objects_scanned == 0
    assert run.discrepancies.count() == 0


def test_empty_backup_makes_every_old_source_object_missing(s3, docs):
    with an_hour_ago():
        for n in range(4):
            put_source(s3, f"k{n}")
    run = reconcile_now(docs)
    assert (run.missing, run.destination_objects) == (4, 0)


def test_counts_stay_complete_when_discrepancy_rows_are_capped(s3, docs, settings):
    settings.RECONCILE_MAX_DISCREPANCY_ROWS = 3
    with an_hour_ago():
        for n in range(7):
            put_source(s3, f"k{n}")
    run = reconcile_now(docs)
    assert run.missing == 7
    assert run.discrepancies.count() == run.discrepancies_stored == 3


def test_key_range_split_gives_exactly_the_counts_of_one_range(s3, docs):
    with an_hour_ago():
        for n in range(30):
            key = f"k{n:02d}"
            if n % 5 == 0:
                put_source(s3, key)
            elif n % 7 == 0:
                put_backup(s3, key)
            elif n % 3 == 0:
                put_source(s3, key, b"one")
                put_backup(s3, key, b"two")
            else:
                put_both(s3, key)
    whole = reconcile_now(docs)
    split = reconcile_now(docs, boundaries=["k05", "k10", "k11", "k27"])

    assert split.ranges_total == 5
    assert counts(split) == counts(whole)
    assert found(split) == found(whole)
    assert whole.differences > 0


def test_next_run_is_cut_into_ranges_sampled_by_the_previous_one(s3, docs, settings):
    settings.RECONCILE_RANGE_SIZE = 4
    with an_hour_ago():
        for n in range(10):
            put_both(s3, f"k{n}")
        put_source(s3, "k5-missing")
    first = reconcile_now(docs)
    second = reconcile_now(docs)

    assert first.ranges_total == 1
    assert first.range_boundaries == ["k3", "k6"]  # every 4th of 11 source keys
    assert second.ranges_total == 3
    assert counts(second) == counts(first)


def test_repair_copies_missing_and_changed_objects_then_rerun_finds_nothing(s3, docs):
    with an_hour_ago():
        put_both(s3, "same")
        put_source(s3, "missing", b"content")
        put_source(s3, "changed", b"newer")
        put_backup(s3, "changed", b"older")
        put_backup(s3, "extra")
    repaired = reconcile_now(docs, repair=True)
    after = reconcile_now(docs)

    assert repaired.repaired == 2
    rows = {d.key.removeprefix(SRC_PREFIX): d for d in repaired.discrepancies.all()}
    assert (rows["missing"].repaired, rows["missing"].repair_outcome) == (True, "copied")
    assert (rows["changed"].repaired, rows["changed"].repair_outcome) == (True, "copied")
    # The pair keeps what its source lost.
    assert (rows["extra"].repaired, rows["extra"].repair_outcome) == (False, "")
    body = s3.get_object(Bucket=BACKUP, Key=BAK_PREFIX + "changed")["Body"].read()
    assert body == b"newer"
    assert found(after) == {"extra": {"extra"}}


def test_repair_deletes_extras_only_for_pairs_that_mirror_deletes(s3, docs):
    docs.mirror_deletes = True
    docs.save()
    with an_hour_ago():
        put_both(s3, "same")
        put_backup(s3, "extra")
    repaired = reconcile_now(docs, repair=True)
    after = reconcile_now(docs)

    row = repaired.discrepancies.get()
    assert (row.kind, row.repaired, row.repair_outcome) == ("extra", True, "deleted")
    assert after.differences == 0
    assert after.in_sync == 1


def test_repair_leaves_unverified_and_in_flight_objects_alone(s3, docs):
    with an_hour_ago():
        upload_in_parts(s3, SOURCE, SRC_PREFIX + "big.bin")
        put_backup(s3, "big.bin", b"".join(PARTS))
    put_source(s3, "young")
    run = reconcile_now(docs, repair=True)
    assert (run.unverified, run.in_flight, run.repaired) == (1, 1, 0)
    assert not Discrepancy.objects.filter(run=run, repaired=True).exists()


def test_repair_of_a_source_changed_since_the_listing_is_skipped_not_copied(s3, docs, monkeypatch):
    with an_hour_ago():
        put_source(s3, "k", b"listed")

    real_copy = repair_module.copy_difference

    def overwrite_then_copy(s3_client, pair, difference):
        put_source(s3, "k", b"written after the listing")
        return real_copy(s3_client, pair, difference)

    monkeypatch.setattr(repair_module, "copy_difference", overwrite_then_copy)
    run = reconcile_now(docs, repair=True)

    row = run.discrepancies.get()
    assert (row.repaired, row.repair_outcome) == (False, "skipped")
    assert run.repaired == 0


def test_asking_for_a_run_while_one_is_active_returns_the_active_one(docs):
    first, created = reconcile.request_run(docs)
    again, created_again = reconcile.request_run(docs, trigger=ReconcileRun.Trigger.API)
    assert created and not created_again
    assert again.pk == first.pk
    assert ReconcileRun.objects.filter(pair=docs).count() == 1


def test_a_missing_bucket_fails_the_run_with_the_reason(s3, docs):
    s3.delete_bucket(Bucket=BACKUP)
    run = reconcile_now(docs)
    assert run.status == ReconcileRun.Status.FAILED
    assert run.error == f"backup bucket '{BACKUP}' does not exist"
    assert run.finished_at is not None
    # A failed run does not block the next one.
    assert reconcile.request_run(docs)[1]


def test_progress_and_heartbeat_are_saved_while_the_run_is_going(s3, docs, settings, monkeypatch):
    settings.RECONCILE_PROGRESS_SECONDS = 0
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)  # a heartbeat after every page
    with an_hour_ago():
        for n in range(12):
            put_both(s3, f"k{n:02d}")
    run, _ = reconcile.request_run(docs)
    seen = []

    def record(_objects):
        saved = ReconcileRun.objects.get(pk=run.pk)
        seen.append((saved.status, saved.objects_scanned))

    inline.reconcile_inline(run.pk, on_progress=record)

    running = [scanned for status, scanned in seen if status == "running"]
    assert 0 < running[0] < 24
    assert running == sorted(running)
    run.refresh_from_db()
    assert run.objects_scanned == 24


def test_a_run_failed_while_going_stops_and_stays_failed(s3, docs, settings, monkeypatch):
    settings.RECONCILE_PROGRESS_SECONDS = 0
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)  # a heartbeat after every page
    with an_hour_ago():
        for n in range(12):
            put_source(s3, f"k{n:02d}")
    run, _ = reconcile.request_run(docs)

    def reaped(_objects):
        reaper.fail_run(run.pk, "reaped")

    inline.reconcile_inline(run.pk, on_progress=reaped)

    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "reaped")
    assert run.missing == 0  # the counts of an abandoned run are not filled in


def test_pairs_are_due_when_their_interval_has_elapsed(db):
    now = timezone.now()
    never_run = make_pair(reconcile_every_minutes=60)
    recent = make_pair(reconcile_every_minutes=60)
    stale = make_pair(reconcile_every_minutes=60)
    make_pair(reconcile_every_minutes=None)
    make_pair(reconcile_every_minutes=1, enabled=False)
    for pair, age in [(recent, 10), (stale, 61)]:
        run, _ = reconcile.request_run(pair)
        ReconcileRun.objects.filter(pk=run.pk).update(
            status="succeeded", verdict="in_sync", created_at=now - timedelta(minutes=age)
        )
    assert {p.pk for p in reconcile.due_pairs(now)} == {never_run.pk, stale.pk}


def test_an_unknown_trigger_is_refused_before_anything_is_stored(docs):
    with pytest.raises(ValueError, match="unknown trigger 'cron'"):
        reconcile.request_run(docs, trigger="cron")
    assert not ReconcileRun.objects.exists()


def test_discrepancy_rows_are_stored_with_what_the_repair_did_to_them(db):
    from datetime import UTC, datetime

    from replication.reconcile.diff import EXTRA, MISMATCHED, MISSING, Difference, Entry
    from replication.reconcile.repair import Repaired

    pair = make_pair(name="rows", source_prefix="live/")
    run = ReconcileRun.objects.create(pair=pair)
    when = datetime(2026, 1, 1, 12, 30, 15, 123000, tzinfo=UTC)
    source = Entry("a/é & <b>.txt", 10, "0cc175b9c0f1b6a831c399e269772661", when)
    backup = Entry("a/é & <b>.txt", 11, "92eb5ffee6ae2fec3ad71c777531578f-2", when)
    rows = writer.DiscrepancyWriter(run, range_index=1)
    rows.add(Difference(MISSING, source.key, source, None), Repaired("copied"))
    rows.add(Difference(EXTRA, backup.key, None, backup))
    rows.add(Difference(MISMATCHED, source.key, source, backup), Repaired("failed", "Denied"))
    rows.flush()

    stored = list(Discrepancy.objects.filter(run=run).order_by("id"))
    assert [(d.kind, d.repaired, d.repair_outcome, d.repair_error) for d in stored] == [
        ("missing", True, "copied", ""),
        ("extra", False, "", ""),
        ("mismatched", False, "failed", "Denied"),
    ]
    assert stored[0].key == "live/a/é & <b>.txt"
    assert stored[0].source_last_modified == when
    assert (stored[2].backup_size, stored[2].backup_etag) == (11, backup.etag)
    assert run.refresh_from_db() or run.discrepancies_stored == 3

"""Truth before pages: a run's verdict, what it writes into object state, how it reads."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from replication.lambda_function import CopyOutcome
from replication.management.commands.reconcile import summary
from replication.models import ObjectState, ReconcileRun
from replication.models.events import CopyStatus, Finding
from replication.reconcile import repair as repair_module
from replication.reconcile.verdict import IN_SYNC, OUT_OF_SYNC, UNPROVEN, verdict
from replication.reconcile.wording import outcome, verdict_detail, verdict_label, verdict_line
from tests.reconcile_support import an_hour_ago, failed_copy, prefixed_pair, reconcile_now

SOURCE, BACKUP = "truth-src", "truth-bak"
SRC_PREFIX, BAK_PREFIX = "live/", "copies/"


# --- Verdict rules (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "mirror_deletes", "expected"),
    [
        ({}, False, IN_SYNC),
        ({}, True, IN_SYNC),
        ({"extra": 1}, False, IN_SYNC),  # a backup keeps what the source lost
        ({"extra": 1}, True, OUT_OF_SYNC),
        ({"missing": 1}, False, OUT_OF_SYNC),
        ({"mismatched": 1}, False, OUT_OF_SYNC),
        ({"unverified": 1}, False, UNPROVEN),
        ({"unverified": 1, "extra": 1}, False, UNPROVEN),
        ({"unverified": 1, "extra": 1}, True, OUT_OF_SYNC),
        ({"unverified": 5, "missing": 1}, False, OUT_OF_SYNC),
        ({"unverified": 5, "mismatched": 1}, False, OUT_OF_SYNC),
    ],
)
def test_verdict_rules(counts, mirror_deletes, expected):
    values = {"missing": 0, "mismatched": 0, "extra": 0, "unverified": 0} | counts
    assert verdict(**values, mirror_deletes=mirror_deletes) == expected


# --- Wording (pure) ----------------------------------------------------------------------------


def a_run(**fields):
    values = {
        "pk": 12,
        "pair": SimpleNamespace(name="photos"),
        "status": "succeeded",
        "verdict": "out_of_sync",
        "error": "",
        "missing": 2,
        "mismatched": 1,
        "extra": 0,
        "unverified": 0,
        "in_flight": 0,
        "repair": False,
        "repaired": 0,
        "repair_failed": 0,
    }
    return SimpleNamespace(**(values | fields))


def test_a_finished_run_reads_verdict_first_then_the_counts():
    assert outcome(a_run()) == "Run #12 of photos finished: out of sync, 2 missing, 1 mismatched"


def test_a_repair_says_what_it_fixed_and_what_failed():
    run = a_run(verdict="out_of_sync", repair=True, repaired=2, repair_failed=1, repaired_missing=2)
    assert outcome(run) == (
        "Run #12 of photos finished: out of sync after repair: 2 missing and 1 mismatched "
        "found: 2 copied, 1 failed"
    )


def test_after_a_repair_the_line_says_what_was_found_and_what_was_repaired():
    run = a_run(
        verdict="in_sync",
        repair=True,
        missing=52,
        mismatched=6,
        extra=1,
        repaired=58,
        repaired_missing=52,
        repaired_mismatched=6,
        in_flight=12,
    )
    assert verdict_line(run) == (
        "in sync after repair: 52 missing and 6 mismatched copied; 1 extra kept · 12 in flight"
    )
    assert verdict_label(run) == "in sync after repair"
    assert verdict_detail(run) == (
        "52 missing and 6 mismatched copied; 1 extra kept · 12 in flight"
    )


def test_extras_a_repair_deleted_are_said_deleted_and_a_clean_repair_says_so():
    run = a_run(verdict="in_sync", repair=True, missing=0, mismatched=0, extra=3, extras_deleted=3)
    assert verdict_line(run) == "in sync after repair: nothing to copy; 3 extra deleted"


def test_in_flight_stands_beside_the_verdict():
    run = a_run(verdict="in_sync", missing=0, mismatched=0, in_flight=12)
    assert verdict_line(run) == "in sync · 12 in flight"
    assert verdict_detail(run) == "12 in flight"
    assert outcome(run) == "Run #12 of photos finished: in sync · 12 in flight"


def test_a_failed_run_reads_as_its_reason_on_one_line():
    run = a_run(status="failed", verdict="", error="bucket gone\n  (second line)")
    assert outcome(run) == "Run #12 of photos failed: bucket gone (second line)"


def test_an_active_run_reads_as_its_status():
    assert outcome(a_run(status="queued", verdict="")) == "Run #12 of photos queued"


# --- Against moto ------------------------------------------------------------------------------


@pytest.fixture
def docs(db, s3):
    return prefixed_pair(SOURCE, BACKUP, SRC_PREFIX, BAK_PREFIX)


def put(s3, bucket: str, key: str, body: bytes = b"same") -> None:
    prefix = SRC_PREFIX if bucket == SOURCE else BAK_PREFIX
    s3.put_object(Bucket=bucket, Key=prefix + key, Body=body)


def state(pair, key: str) -> ObjectState:
    return ObjectState.objects.get(pair=pair, key=SRC_PREFIX + key)


def test_a_failure_whose_success_report_was_lost_is_resolved_by_the_next_reconcile(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "a.txt")
        put(s3, BACKUP, "a.txt")
        failed_copy(docs, "a.txt", timezone.now())

    run = reconcile_now(docs)

    row = state(docs, "a.txt")
    assert (row.finding, row.finding_run_id, row.finding_at) == ("in_sync", run.pk, run.started_at)
    assert row.current == Finding.IN_SYNC
    assert row.status == CopyStatus.FAILED  # the event stays as reported
    assert not ObjectState.objects.open_failures().exists()


def test_open_failures_after_a_difference_waiting_for_its_heads_are_resolved_too(s3, docs):
    # "a" has the same size on both sides and other content: it waits for its HEADs while
    # the merge runs ahead over the in-sync keys after it, each with an open failure.
    keys = [f"b{n}" for n in range(5)]
    with an_hour_ago():
        put(s3, SOURCE, "a", b"aaaa")
        put(s3, BACKUP, "a", b"bbbb")
        for key in keys:
            put(s3, SOURCE, key)
            put(s3, BACKUP, key)
            failed_copy(docs, key, timezone.now())

    run = reconcile_now(docs)

    assert (run.mismatched, run.in_sync) == (1, 5)
    assert [state(docs, key).finding for key in keys] == [Finding.IN_SYNC] * 5
    assert state(docs, "a").finding == Finding.MISMATCHED
    assert not ObjectState.objects.open_failures().exists()


def test_objects_in_sync_with_no_open_problem_get_no_row(s3, docs):
    with an_hour_ago():
        for key in ("a", "b"):
            put(s3, SOURCE, key)
            put(s3, BACKUP, key)
    put(s3, SOURCE, "young")  # in flight: no finding either

    run = reconcile_now(docs)

    assert (run.in_sync, run.in_flight) == (2, 1)
    assert not ObjectState.objects.exists()


def test_a_missing_object_is_lacking_since_the_first_run_that_found_it(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "gone.txt", b"content")

    first = reconcile_now(docs)
    second = reconcile_now(docs)

    row = state(docs, "gone.txt")
    assert (row.finding, row.finding_run_id) == (Finding.MISSING, second.pk)
    assert row.lacking_since == first.started_at
    assert row.source_modified_at is not None
    assert row.event_time is None and row.status == ""
    assert list(ObjectState.objects.lacking()) == [row]


def test_a_mismatched_object_is_found_mismatched(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "k", b"longer")
        put(s3, BACKUP, "k", b"short")
    reconcile_now(docs)
    assert state(docs, "k").finding == Finding.MISMATCHED


def test_a_repaired_object_is_marked_copied_by_repair_and_no_longer_lacking(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "gone.txt", b"content")
    reconcile_now(docs)

    repaired = reconcile_now(docs, repair=True)

    row = state(docs, "gone.txt")
    assert (row.finding, row.finding_run_id, row.lacking_since) == (
        Finding.REPAIRED,
        repaired.pk,
        None,
    )
    assert not ObjectState.objects.lacking().exists()
    assert repaired.verdict == ReconcileRun.Verdict.IN_SYNC
    assert repaired.missing == 1  # the raw count stays as found


def test_a_newer_event_supersedes_the_finding(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "gone.txt")
    run = reconcile_now(docs)
    later = run.started_at + timedelta(minutes=1)
    ObjectState.objects.filter(key=SRC_PREFIX + "gone.txt").update(
        event_name="ObjectCreated:Put",
        event_time=later,
        sequencer="0B",
        sequencer_order="0B".ljust(32, "0"),
        status=CopyStatus.COPIED,
        finished_at=later,
    )

    row = state(docs, "gone.txt")
    assert row.current == CopyStatus.COPIED
    assert not ObjectState.objects.lacking().exists()


def test_an_event_older_than_the_finding_does_not_reopen_it(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "a.txt")
        put(s3, BACKUP, "a.txt")
        failed_copy(docs, "a.txt", timezone.now())
    run = reconcile_now(docs)
    # A late report of an older failure, arriving after the run.
    earlier = run.started_at - timedelta(minutes=5)
    ObjectState.objects.filter(key=SRC_PREFIX + "a.txt").update(
        event_time=earlier, finished_at=earlier, status=CopyStatus.FAILED
    )

    assert state(docs, "a.txt").current == Finding.IN_SYNC
    assert not ObjectState.objects.open_failures().exists()


def test_findings_are_complete_even_when_discrepancy_rows_are_capped(s3, docs, settings):
    settings.RECONCILE_MAX_DISCREPANCY_ROWS = 1
    with an_hour_ago():
        for n in range(3):
            put(s3, SOURCE, f"m{n}")

    run = reconcile_now(docs)

    assert (run.missing, run.discrepancies_stored) == (3, 1)
    assert ObjectState.objects.lacking().count() == 3


def test_a_repair_copies_beyond_the_cap_on_stored_rows(s3, docs, settings):
    settings.RECONCILE_MAX_DISCREPANCY_ROWS = 1  # rows are capped; repair is not
    with an_hour_ago():
        for n in range(3):
            put(s3, SOURCE, f"m{n}")

    run = reconcile_now(docs, repair=True)

    assert (run.missing, run.repaired, run.verdict) == (3, 3, ReconcileRun.Verdict.IN_SYNC)
    assert run.discrepancies.count() == 1
    assert ObjectState.objects.filter(finding=Finding.REPAIRED).count() == 3
    assert ObjectState.objects.lacking().count() == 0


def test_a_failed_repair_leaves_the_run_out_of_sync(s3, docs, monkeypatch):
    monkeypatch.setattr(repair_module, "copy_object", lambda *a, **k: CopyOutcome(status="failed"))
    with an_hour_ago():
        put(s3, SOURCE, "m")

    run = reconcile_now(docs, repair=True)

    assert (run.repaired, run.repair_failed, run.verdict) == (0, 1, "out_of_sync")
    assert state(docs, "m").finding == Finding.MISSING


def test_open_problems_are_resolved_in_every_key_range(s3, docs):
    keys = ["a", "f", "m", "t", "\u00e9t\u00e9"]  # a non-ASCII key sorts after every ASCII one
    with an_hour_ago():
        for key in keys:
            put(s3, SOURCE, key)
            put(s3, BACKUP, key)
            failed_copy(docs, key, timezone.now())
    # An open failure outside the prefix's keys is not this range's business.
    ObjectState.objects.create(
        pair=docs,
        key="elsewhere",
        event_time=timezone.now(),
        sequencer_order="0".ljust(32, "0"),
        status=CopyStatus.FAILED,
        finished_at=timezone.now(),
    )

    run = reconcile_now(docs, boundaries=["c", "m"])

    assert run.in_sync == len(keys)
    resolved = ObjectState.objects.filter(finding=Finding.IN_SYNC, finding_run=run)
    assert sorted(resolved.values_list("key", flat=True)) == sorted(SRC_PREFIX + k for k in keys)
    assert list(ObjectState.objects.open_failures().values_list("key", flat=True)) == ["elsewhere"]


def test_discrepancy_keys_are_source_keys_with_the_prefix(s3, docs):
    with an_hour_ago():
        put(s3, SOURCE, "dir/missing.txt")
        put(s3, BACKUP, "dir/extra.txt")

    run = reconcile_now(docs)

    assert sorted(run.discrepancies.values_list("kind", "key")) == [
        ("extra", SRC_PREFIX + "dir/extra.txt"),
        ("missing", SRC_PREFIX + "dir/missing.txt"),
    ]
    assert state(docs, "dir/missing.txt").key == "live/dir/missing.txt"


def test_a_failed_run_has_no_verdict_in_json(s3, docs):
    s3.delete_bucket(Bucket=BACKUP)
    run = reconcile_now(docs)
    assert (run.status, run.verdict) == ("failed", "")
    assert summary(run)["verdict"] is None

"""Retention of runs, discrepancy rows, health changes, notifications and deleted objects'
states: bounded batches, and never what the pages and the monthly report need."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from replication import retention, tasks
from replication.models import (
    AlertChannel,
    Discrepancy,
    HealthChange,
    Notification,
    ObjectState,
    ProtectionResult,
    ReconcileRange,
    ReconcileRun,
)
from tests.factories import make_pair

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MONTH = 30 * DAY
SEQUENCER = "0" * 32


@pytest.fixture(autouse=True)
def _defaults(settings):
    settings.RECONCILE_RUN_RETENTION_DAYS = 396
    settings.RECONCILE_DETAIL_RETENTION_DAYS = 7
    settings.ALERT_HISTORY_RETENTION_DAYS = 396
    settings.PROTECTION_RESULT_RETENTION_DAYS = 396
    settings.EVENT_RETENTION_DAYS = 90


def run(pair, age: timedelta, status="succeeded", rows=0, ranges=0) -> ReconcileRun:
    """A run created ``age`` before NOW with ``rows`` discrepancy rows and ``ranges`` ranges."""
    verdict = "out_of_sync" if status == "succeeded" else ""
    r = ReconcileRun.objects.create(pair=pair, status=status, verdict=verdict, missing=rows)
    ReconcileRun.objects.filter(pk=r.pk).update(created_at=NOW - age, finished_at=NOW - age)
    Discrepancy.objects.bulk_create(
        Discrepancy(run=r, key=f"k{i}", kind="missing") for i in range(rows)
    )
    ReconcileRange.objects.bulk_create(ReconcileRange(run=r, index=i) for i in range(ranges))
    return r


def rows_of(r: ReconcileRun) -> int:
    return Discrepancy.objects.filter(run=r).count()


# --- Discrepancy rows and ranges --------------------------------------------------------------


def test_old_runs_lose_their_rows_but_each_pairs_latest_runs_and_young_runs_keep_them():
    photos, logs = make_pair(name="photos"), make_pair(name="logs")
    old = run(photos, 30 * DAY, rows=3, ranges=2)
    latest_succeeded = run(photos, 20 * DAY, rows=2, ranges=1)
    latest_finished = run(photos, 15 * DAY, status="failed", rows=1)
    young = run(logs, 3 * DAY, rows=2)
    young_latest = run(logs, 1 * DAY, rows=1)

    purged = retention.purge(now=NOW)

    assert (purged.discrepancies, purged.ranges) == (3, 2)
    assert rows_of(old) == 0 and not ReconcileRange.objects.filter(run=old).exists()
    old.refresh_from_db()
    # The run's summary stays, and says its rows went.
    assert (old.missing, old.discrepancies_purged_at) == (3, NOW)
    for kept, rows in [(latest_succeeded, 2), (latest_finished, 1), (young, 2), (young_latest, 1)]:
        assert rows_of(kept) == rows
        kept.refresh_from_db()
        assert kept.discrepancies_purged_at is None


def test_rows_are_deleted_in_bounded_batches_and_the_rest_waits_for_the_next_run():
    photos = make_pair(name="photos")
    old = run(photos, 30 * DAY, rows=7)
    run(photos, 1 * DAY)  # the latest

    with CaptureQueriesContext(connection) as queries:
        first = retention.purge(now=NOW, batch_size=3, max_batches=2)
    deletes = [
        q["sql"] for q in queries if q["sql"].startswith("DELETE") and "discrepancy" in q["sql"]
    ]
    assert first.discrepancies == 6 and len(deletes) == 2
    assert rows_of(old) == 1
    old.refresh_from_db()
    assert old.discrepancies_purged_at is None  # not done yet: taken up again next time

    assert retention.purge(now=NOW, batch_size=3, max_batches=2).discrepancies == 1
    old.refresh_from_db()
    assert rows_of(old) == 0 and old.discrepancies_purged_at == NOW


def test_a_running_run_is_never_touched():
    photos = make_pair(name="photos")
    running = run(photos, 30 * DAY, status="running", rows=2)
    run(photos, 2 * DAY)
    retention.purge(now=NOW)
    assert rows_of(running) == 2


# --- Run summaries ----------------------------------------------------------------------------


def test_run_summaries_stay_13_months_and_each_pairs_latest_whatever_its_age():
    photos, quiet = make_pair(name="photos"), make_pair(name="quiet")
    ancient = run(photos, 14 * MONTH)
    within = run(photos, 12 * MONTH + 29 * DAY)  # the report's oldest month
    run(photos, 1 * DAY)
    only = run(quiet, 24 * MONTH)  # a pair reconciled once, two years ago
    state = ObjectState.objects.create(
        pair=photos,
        key="a.jpg",
        finding="missing",
        finding_run=ancient,
        finding_at=NOW - 14 * MONTH,
    )

    assert retention.purge(now=NOW).runs == 1

    assert not ReconcileRun.objects.filter(pk=ancient.pk).exists()
    assert ReconcileRun.objects.filter(pk__in=[within.pk, only.pk]).count() == 2
    state.refresh_from_db()
    assert (state.finding, state.finding_run_id) == ("missing", None)


# --- Health changes and notifications ---------------------------------------------------------


def change(
    pair, sequence: int, age: timedelta, to_state: str, from_state: str = ""
) -> HealthChange:
    return HealthChange.objects.create(
        pair=pair,
        sequence=sequence,
        from_state=from_state,
        to_state=to_state,
        reason="r",
        at=NOW - age,
    )


def test_health_changes_and_notifications_stay_13_months_and_a_pairs_latest_change_always():
    photos, quiet = make_pair(name="photos"), make_pair(name="quiet")
    channel = AlertChannel.objects.create(name="ops", kind="email", target="o@example.com")
    ancient = change(photos, 1, 14 * MONTH, "critical")
    Notification.objects.create(
        change=ancient, channel=channel, kind="alert", created_at=NOW - 14 * MONTH
    )
    within = change(photos, 2, 12 * MONTH, "ok", "critical")
    kept_message = Notification.objects.create(
        change=within, channel=channel, kind="resolved", created_at=NOW - 12 * MONTH
    )
    lonely = change(quiet, 1, 24 * MONTH, "ok")  # the evaluator numbers the next from it
    Notification.objects.create(channel=channel, kind="test", created_at=NOW - 14 * MONTH)
    recent_test = Notification.objects.create(channel=channel, kind="test", created_at=NOW - DAY)

    purged = retention.purge(now=NOW)

    assert (purged.health_changes, purged.notifications) == (1, 2)
    assert set(HealthChange.objects.values_list("pk", flat=True)) == {within.pk, lonely.pk}
    assert set(Notification.objects.values_list("pk", flat=True)) == {
        kept_message.pk,
        recent_test.pk,
    }


# --- Protection check results ----------------------------------------------------------------


def result(pair, check: str, state: str, at: datetime, latest=False) -> ProtectionResult:
    return ProtectionResult.objects.create(
        pair=pair, check_id=check, state=state, reason=state, checked_at=at, is_latest=latest
    )


def test_protection_results_stay_13_months_and_each_checks_latest_and_the_one_then_in_force():
    photos, quiet = make_pair(name="photos"), make_pair(name="quiet")
    result(photos, "backup_versioning", "ok", NOW - 20 * MONTH)
    result(photos, "backup_versioning", "critical", NOW - 16 * MONTH)
    # In force when the 13 months began: the oldest month's report starts from it.
    in_force = result(photos, "backup_versioning", "ok", NOW - 14 * MONTH)
    within = result(photos, "backup_versioning", "warning", NOW - 10 * MONTH)
    latest = result(photos, "backup_versioning", "ok", NOW - DAY, latest=True)
    # A check whose only result is two years old: it is the latest, and stays.
    lonely = result(photos, "source_trigger", "ok", NOW - 24 * MONTH, latest=True)
    result(quiet, "encryption", "ok", NOW - 15 * MONTH)
    quiet_latest = result(quiet, "encryption", "ok", NOW - 14 * MONTH, latest=True)

    purged = retention.purge(now=NOW)

    assert purged.protection_results == 3
    assert set(ProtectionResult.objects.values_list("pk", flat=True)) == {
        r.pk for r in (in_force, within, latest, lonely, quiet_latest)
    }


def test_the_oldest_months_report_reads_the_same_protection_history_after_the_purge():
    from replication.evidence.report import build_report

    photos = make_pair(name="photos")
    photos.created_at = NOW - 24 * MONTH
    photos.save(update_fields=["created_at"])
    at = lambda *ymd: datetime(*ymd, tzinfo=UTC)  # noqa: E731
    result(photos, "backup_versioning", "critical", at(2025, 9, 1))
    result(photos, "backup_versioning", "ok", at(2025, 10, 1))  # before the cutoff, in force
    result(photos, "backup_versioning", "warning", at(2025, 11, 10))
    result(photos, "backup_versioning", "ok", at(2026, 11, 20), latest=True)
    oldest = datetime(2025, 11, 1).date()  # NOW's month and the twelve before it

    before = build_report(photos, oldest, NOW).protection
    assert retention.purge(now=NOW).protection_results == 1
    after = build_report(photos, oldest, NOW).protection

    assert after == before
    (month,) = after.checks
    assert (month.state_at_start, [c.to_state for c in month.changes]) == ("ok", ["warning"])


def test_protection_results_go_in_bounded_batches():
    photos = make_pair(name="photos")
    for i in range(6):
        result(photos, "encryption", "ok", NOW - 14 * MONTH - i * DAY)
    assert retention.purge(now=NOW, batch_size=2, max_batches=2).protection_results == 4
    assert retention.purge(now=NOW, batch_size=2, max_batches=2).protection_results == 1
    assert ProtectionResult.objects.count() == 1


# --- Deleted objects' states ------------------------------------------------------------------


def state(pair, key: str, status: str, age: timedelta, **finding) -> ObjectState:
    return ObjectState.objects.create(
        pair=pair,
        key=key,
        event_name="ObjectRemoved:Delete" if status == "deleted" else "ObjectCreated:Put",
        event_time=NOW - age,
        sequencer=SEQUENCER,
        sequencer_order=SEQUENCER,
        status=status,
        finished_at=NOW - age,
        **finding,
    )


def test_states_of_objects_deleted_long_ago_go_unless_a_reconcile_found_them_lacking_since():
    photos = make_pair(name="photos")
    state(photos, "gone", "deleted", 100 * DAY)
    state(photos, "deleted-recently", "deleted", 80 * DAY)
    state(photos, "copied-long-ago", "copied", 200 * DAY)
    state(
        photos, "found-missing", "deleted", 100 * DAY, finding="missing", finding_at=NOW - 200 * DAY
    )
    state(
        photos, "checked-lately", "deleted", 100 * DAY, finding="in_sync", finding_at=NOW - 10 * DAY
    )
    state(
        photos,
        "checked-long-ago",
        "deleted",
        100 * DAY,
        finding="in_sync",
        finding_at=NOW - 95 * DAY,
    )

    assert retention.purge(now=NOW).object_states == 2

    assert set(ObjectState.objects.values_list("key", flat=True)) == {
        "deleted-recently",
        "copied-long-ago",
        "found-missing",
        "checked-lately",
    }


def test_deleted_states_go_in_bounded_batches():
    photos = make_pair(name="photos")
    for i in range(5):
        state(photos, f"gone/{i}", "deleted", 100 * DAY)
    assert retention.purge(now=NOW, batch_size=2, max_batches=2).object_states == 4
    assert retention.purge(now=NOW, batch_size=2, max_batches=2).object_states == 1


# --- Scheduling -------------------------------------------------------------------------------


def test_beat_runs_the_purge_hourly_and_drops_missed_ticks():
    entry = django_settings.CELERY_BEAT_SCHEDULE["purge-expired-records"]
    assert entry["task"] == tasks.purge_expired_records.name
    assert entry["schedule"] == 3600
    assert entry["options"]["expires"] < entry["schedule"]


def test_the_task_reports_what_it_purged():
    assert tasks.purge_expired_records.delay().get() == {
        "discrepancies": 0,
        "ranges": 0,
        "runs": 0,
        "health_changes": 0,
        "notifications": 0,
        "protection_results": 0,
        "object_states": 0,
    }


@pytest.mark.parametrize(
    "name", ["ALERT_HISTORY_RETENTION_DAYS", "PROTECTION_RESULT_RETENTION_DAYS"]
)
def test_a_retention_shorter_than_the_monthly_report_needs_is_warned_about(settings, name):
    from replication.checks import check_configuration

    setattr(settings, name, 90)
    (warning,) = [p for p in check_configuration(None) if p.id == "replication.W006"]
    assert name in warning.msg


def test_a_run_whose_rows_went_says_so_on_its_page(admin_client):
    photos = make_pair(name="photos")
    old = run(photos, 30 * DAY, rows=2)
    run(photos, 1 * DAY)
    retention.purge(now=NOW)
    body = admin_client.get(f"/runs/{old.pk}/").content.decode()
    assert "rows were removed by retention on 2026-11-27" in body

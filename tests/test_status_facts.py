"""Gathering health facts from the database: what counts, and in how many queries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from replication.models import Finding, ObjectState, ReconcileRun
from replication.status.facts import lag_percentiles, pair_health
from replication.status.health import State
from tests.factories import make_pair, record_events, record_run


def finished_run(pair, **fields) -> ReconcileRun:
    values = {"status": "succeeded", "verdict": "in_sync", "finished_at": timezone.now()}
    return ReconcileRun.objects.create(pair=pair, **(values | fields))


def health_of(pair):
    (entry,) = [h for h in pair_health() if h.pair.pk == pair.pk]
    return entry


@pytest.mark.django_db
def test_a_fresh_pair_is_unknown():
    pair = make_pair()
    assert health_of(pair).health.state == State.UNKNOWN


@pytest.mark.django_db
def test_an_old_failure_makes_the_pair_critical():
    pair = make_pair(grace_seconds=60)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    record_events(pair, {"status": "failed", "event_time": an_hour_ago, "error_code": "Boom"})
    entry = health_of(pair)
    assert entry.facts.open_failures == 1
    assert entry.health.state == State.CRITICAL


@pytest.mark.django_db
def test_a_failure_a_later_reconcile_found_in_sync_is_no_longer_open():
    pair = make_pair(grace_seconds=60)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    record_events(pair, {"status": "failed", "event_time": an_hour_ago, "key": "a.jpg"})
    run = finished_run(pair)
    ObjectState.objects.filter(pair=pair, key="a.jpg").update(
        finding=Finding.IN_SYNC, finding_run=run, finding_at=timezone.now()
    )
    entry = health_of(pair)
    assert entry.facts.open_failures == 0
    assert entry.health.state == State.OK


@pytest.mark.django_db
def test_a_failure_newer_than_the_finding_stays_open():
    pair = make_pair(grace_seconds=60)
    run = finished_run(pair)
    record_events(pair, {"status": "failed", "event_time": timezone.now(), "key": "a.jpg"})
    ObjectState.objects.filter(pair=pair, key="a.jpg").update(
        finding=Finding.IN_SYNC, finding_run=run, finding_at=timezone.now() - timedelta(hours=1)
    )
    assert health_of(pair).facts.open_failures == 1


@pytest.mark.django_db
def test_objects_found_missing_count_as_lacking_until_a_copy_arrives():
    pair = make_pair()
    run = finished_run(pair, verdict="out_of_sync", missing=2)
    found_at = timezone.now() - timedelta(minutes=5)
    written_at = {"a.jpg": found_at - timedelta(days=2), "b.jpg": found_at - timedelta(days=3)}
    for key, modified in written_at.items():
        ObjectState.objects.create(
            pair=pair,
            key=key,
            finding=Finding.MISSING,
            finding_run=run,
            finding_at=found_at,
            lacking_since=found_at,
            source_modified_at=modified,
        )
    record_events(
        pair, {"key": "b.jpg", "event_time": timezone.now(), "finished_at": timezone.now()}
    )
    entry = health_of(pair)
    assert (entry.facts.lacking.total, entry.facts.lacking.missing) == (1, 1)
    # How far behind: the age of the oldest object still lacking, not when it was found.
    assert entry.facts.lacking.since == written_at["a.jpg"]
    assert entry.health.state == State.CRITICAL


@pytest.mark.django_db
def test_the_latest_succeeded_run_gives_the_verdict_and_a_later_failure_warns():
    pair = make_pair()
    good = finished_run(pair)
    failed = finished_run(pair, status="failed", verdict="", error="read timeout: photos-bak")
    ReconcileRun.objects.filter(pk=failed.pk).update(created_at=good.created_at + timedelta(1))
    entry = health_of(pair)
    assert (entry.facts.last_verdict_run.id, entry.facts.last_run.id) == (good.id, failed.id)
    assert entry.health.state == State.WARNING
    assert entry.health.reason == f"last reconcile (#{failed.id}) failed: read timeout: photos-bak"


@pytest.mark.django_db
def test_a_later_reconcile_that_found_a_bucket_gone_is_critical():
    pair = make_pair()
    good = finished_run(pair)
    error = "backup bucket 'photos-bak' does not exist"
    failed = finished_run(pair, status="failed", verdict="", error=error)
    ReconcileRun.objects.filter(pk=failed.pk).update(created_at=good.created_at + timedelta(1))
    entry = health_of(pair)
    assert entry.health.state == State.CRITICAL
    assert entry.health.reason == f"{error} (reconcile #{failed.id} failed)"


@pytest.mark.django_db
def test_pairs_come_worst_first():
    ok = make_pair(name="a-ok")
    finished_run(ok)
    record_events(ok, {})
    critical = make_pair(name="z-critical")
    record_run(critical, "out_of_sync", missing=1)
    paused = make_pair(name="b-paused", enabled=False)
    unknown = make_pair(name="c-unknown")
    assert [h.pair for h in pair_health()] == [critical, unknown, ok, paused]


@pytest.mark.django_db
def test_health_of_many_pairs_takes_a_fixed_number_of_queries(django_assert_max_num_queries):
    for n in range(12):
        pair = make_pair()
        finished_run(pair, verdict="out_of_sync", missing=n)
        record_events(pair, {"status": "failed"}, {})
    # 5 of the pairs' own facts (what the backup lacks is two counts, each served by one
    # index alone), and the rooms' findings, given the pairs: freshness 1, protection 2
    # (latest results, open holds), restore drills 1.
    with django_assert_max_num_queries(9):
        assert len(pair_health()) == 12


@pytest.mark.django_db
def test_lag_percentiles_cover_copies_in_the_window_only():
    pair = make_pair()
    now = timezone.now()
    record_events(
        pair,
        *[
            {
                "event_time": now - timedelta(seconds=lag + 1),
                "finished_at": now - timedelta(seconds=1),
            }
            for lag in (1, 2, 3, 4, 10)
        ],
        {"status": "failed", "event_time": now - timedelta(hours=5), "finished_at": now},
        {"event_time": now - timedelta(hours=3), "finished_at": now - timedelta(hours=2)},
    )
    (p50, p95, p99) = lag_percentiles([pair.pk], since=now - timedelta(hours=1))[pair.pk]
    assert (p50.total_seconds(), p95.total_seconds(), p99.total_seconds()) == pytest.approx(
        (3.0, 8.8, 9.76)
    )


def findings_of_another_room(pairs, now):
    """A room's health_findings, as protection or restore drills deliver them."""
    return {pair.pk: [("critical", "the destructive-change guard holds")] for pair in pairs}


def a_room_that_fails(pairs, now):
    raise RuntimeError("protection table missing")


@pytest.mark.django_db
def test_findings_of_other_rooms_are_wired_in_by_their_dotted_path(monkeypatch):
    from replication.status import facts

    pair = make_pair()
    record_events(pair, {})
    monkeypatch.setattr(
        facts, "FINDING_SOURCES", ("tests.test_status_facts.findings_of_another_room",)
    )
    entry = health_of(pair)
    assert entry.facts.extra_findings == (("critical", "the destructive-change guard holds"),)
    assert (entry.health.state, entry.health.reason) == (
        State.CRITICAL,
        "the destructive-change guard holds",
    )


@pytest.mark.django_db
def test_a_room_whose_findings_cannot_be_read_is_a_warning_not_an_error(monkeypatch):
    from replication.status import facts

    pair = make_pair()
    record_events(pair, {})
    monkeypatch.setattr(facts, "FINDING_SOURCES", ("tests.test_status_facts.a_room_that_fails",))
    entry = health_of(pair)
    assert entry.health.state == State.WARNING
    assert "could not be read: protection table missing" in entry.health.reason

"""The health rules, each at its boundary. Pure: no database."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from replication.status.health import (
    PairFacts,
    RunFacts,
    State,
    clock,
    duration,
    evaluate,
    overdue_by,
)
from replication.status.lacking import Lacking

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
GRACE = timedelta(minutes=15)


def run(**fields) -> RunFacts:
    values = {
        "id": 12,
        "status": "succeeded",
        "verdict": "in_sync",
        "created_at": NOW - timedelta(minutes=30),
        "finished_at": NOW - timedelta(minutes=29),
    }
    return RunFacts(**(values | fields))


def facts(**fields) -> PairFacts:
    values = {
        "name": "photos",
        "enabled": True,
        "created_at": NOW - timedelta(days=30),
        "grace": GRACE,
        "lag_objective": timedelta(minutes=15),
        "reconcile_every": None,
        "has_events": True,
        "lag_p95": timedelta(seconds=3),
        "last_run": run(),
        "last_verdict_run": run(),
    }
    return PairFacts(**(values | fields))


def lacking(since: datetime, **counts) -> Lacking:
    """What the backup lacks: ``counts`` by kind (failed, missing, mismatched)."""
    return Lacking(total=sum(counts.values()), since=since, **counts)


def test_a_pair_that_copies_and_is_in_sync_is_ok_and_says_so():
    health = evaluate(facts(), NOW)
    assert health.state == State.OK
    assert health.reason == "in sync at reconcile #12, p95 lag 3 s"


def test_a_disabled_pair_is_paused_whatever_else_is_wrong():
    health = evaluate(facts(enabled=False, lacking=lacking(NOW, failed=3)), NOW)
    assert health.state == State.PAUSED
    assert "enable it in the admin" in health.reason


def test_a_pair_with_no_events_and_no_reconcile_is_unknown():
    health = evaluate(
        facts(has_events=False, last_run=None, last_verdict_run=None, lag_p95=None), NOW
    )
    assert health.state == State.UNKNOWN
    assert "REPORT_URL" in health.reason


def test_a_pair_with_events_but_never_reconciled_is_judged_on_its_events():
    health = evaluate(facts(last_run=None, last_verdict_run=None), NOW)
    assert health.state == State.OK
    assert health.reason == "copies arriving; not reconciled yet, p95 lag 3 s"


def test_a_pair_never_reconciled_with_no_events_but_a_reconcile_is_not_unknown():
    health = evaluate(facts(has_events=False, lag_p95=None), NOW)
    assert health.state == State.OK


def test_objects_lacking_longer_than_grace_are_critical_with_counts_and_since_when():
    out = run(verdict="out_of_sync", missing=3, mismatched=1)
    since = NOW.replace(hour=14, minute=2)
    health = evaluate(
        facts(last_run=out, last_verdict_run=out, lacking=lacking(since, missing=3, mismatched=1)),
        NOW,
    )
    assert health.state == State.CRITICAL
    assert health.reason == (
        "4 objects lacking, behind by 58 min: 3 missing, 1 mismatched since 14:02 UTC "
        "(longer than the 15 min grace period)"
    )


def test_an_out_of_sync_run_whose_objects_were_all_copied_since_is_ok_and_says_so():
    out = run(verdict="out_of_sync", missing=3)
    health = evaluate(facts(last_run=out, last_verdict_run=out), NOW)
    assert health.state == State.OK
    assert health.reason.startswith("in sync: what reconcile #12 found lacking was copied since")


def test_a_run_out_of_sync_only_through_failures_within_grace_is_a_warning():
    out = run(verdict="out_of_sync", missing=2)
    young = lacking(NOW - timedelta(minutes=5), failed=2)
    health = evaluate(facts(last_run=out, last_verdict_run=out, lacking=young), NOW)
    assert health.state == State.WARNING
    assert health.reason == (
        "2 objects lacking, behind by 5 min: 2 failed copies since 14:55 UTC "
        "(within the 15 min grace period)"
    )


def test_extras_are_named_only_for_a_pair_that_mirrors_deletes():
    out = run(verdict="out_of_sync", extra=4, created_at=NOW.replace(hour=14, minute=2))
    health = evaluate(facts(mirror_deletes=True, last_run=out, last_verdict_run=out), NOW)
    assert health.state == State.CRITICAL
    assert health.reason == (
        "4 objects in the backup that the source deleted, on a pair that mirrors deletes "
        "(reconcile #12)"
    )
    assert evaluate(facts(last_run=out, last_verdict_run=out), NOW).state == State.OK


@pytest.mark.parametrize(
    "error",
    [
        "source bucket 'photos-src' does not exist",
        "access denied to backup bucket 'photos-bak': the credentials need s3:ListBucket on it",
        "An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation",
        "An error occurred (AccessDenied) when calling the ListObjectsV2 operation",
    ],
)
def test_a_reconcile_that_failed_because_a_bucket_is_gone_or_denied_is_critical(error):
    failed = run(id=13, status="failed", verdict="", error=error + "\nmore")
    health = evaluate(facts(last_run=failed), NOW)
    assert health.state == State.CRITICAL
    assert health.reason == f"{error} (reconcile #13 failed)"


def test_a_pair_never_reconciled_whose_first_run_found_its_bucket_gone_is_critical():
    failed = run(id=1, status="failed", verdict="", error="source bucket 'x' does not exist")
    health = evaluate(facts(has_events=False, last_run=failed, last_verdict_run=None), NOW)
    assert health.state == State.CRITICAL


def test_objects_written_with_no_copy_report_older_than_grace_are_a_warning():
    unreported = facts(unreported=3, oldest_unreported_at=NOW - GRACE - timedelta(seconds=1))
    health = evaluate(unreported, NOW)
    assert health.state == State.WARNING
    assert health.reason.startswith(
        "objects written with no copy report: is the Lambda or its trigger running? (3 "
    )
    young = facts(unreported=3, oldest_unreported_at=NOW - GRACE)
    assert evaluate(young, NOW).state == State.OK


def test_findings_of_other_rooms_join_the_pairs_own():
    found = facts(
        extra_findings=(
            ("warning", "backup versioning is off"),
            ("critical", "the destructive-change guard holds 4 deletes"),
        ),
        lag_p95=timedelta(minutes=20),
    )
    health = evaluate(found, NOW)
    assert health.state == State.CRITICAL
    assert health.reasons == (
        "the destructive-change guard holds 4 deletes",
        "p95 lag 20 min > 15 min over the last hour",
        "backup versioning is off",
    )


def test_a_critical_finding_of_another_room_is_not_hidden_as_unknown():
    bare = facts(has_events=False, last_run=None, last_verdict_run=None, lag_p95=None)
    health = evaluate(replace(bare, extra_findings=(("critical", "backup bucket gone"),)), NOW)
    assert health.state == State.CRITICAL


def test_ok_only_when_nothing_is_lacking():
    for counts in ({"failed": 1}, {"missing": 1}, {"mismatched": 1}):
        for age in (timedelta(minutes=1), timedelta(hours=2)):
            health = evaluate(facts(lacking=lacking(NOW - age, **counts)), NOW)
            assert health.state != State.OK


def test_a_time_on_another_day_carries_its_date():
    assert clock(datetime(2026, 11, 27, 9, 5, tzinfo=UTC), NOW) == "2026-11-27 09:05 UTC"
    assert clock(datetime(2026, 11, 28, 9, 5, tzinfo=UTC), NOW) == "09:05 UTC"


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (GRACE - timedelta(seconds=1), State.WARNING),
        (GRACE, State.WARNING),
        (GRACE + timedelta(seconds=1), State.CRITICAL),
    ],
)
def test_an_open_failure_is_a_warning_within_grace_and_critical_after(age, state):
    health = evaluate(facts(lacking=lacking(NOW - age, failed=2)), NOW)
    assert health.state == state
    assert health.reason.startswith("2 objects lacking, behind by ")
    assert ": 2 failed copies since " in health.reason


def test_a_failure_past_grace_names_the_grace_period():
    since = NOW - timedelta(minutes=58)
    health = evaluate(facts(lacking=lacking(since, failed=1)), NOW)
    assert health.reason == (
        "1 object lacking, behind by 58 min: 1 failed copy since 14:02 UTC "
        "(longer than the 15 min grace period)"
    )


@pytest.mark.parametrize(
    ("p95", "state"),
    [(timedelta(minutes=15), State.OK), (timedelta(minutes=15, seconds=1), State.WARNING)],
)
def test_lag_over_the_objective_is_a_warning(p95, state):
    health = evaluate(facts(lag_p95=p95), NOW)
    assert health.state == state


def test_the_lag_warning_reads_as_a_comparison():
    health = evaluate(facts(lag_p95=timedelta(minutes=22)), NOW)
    assert health.reason == "p95 lag 22 min > 15 min over the last hour"


def test_no_copies_in_the_window_is_no_lag_warning():
    assert evaluate(facts(lag_p95=None), NOW).state == State.OK


def test_an_unproven_verdict_is_a_warning():
    unproven = run(verdict="unproven", unverified=4)
    health = evaluate(facts(last_run=unproven, last_verdict_run=unproven), NOW)
    assert health.state == State.WARNING
    assert health.reason == "4 objects could not be verified by reconcile #12 (unproven)"


def test_a_failed_last_reconcile_is_a_warning_with_its_first_line():
    failed = run(id=13, status="failed", verdict="", error="read timeout on photos-bak\nmore")
    health = evaluate(facts(last_run=failed), NOW)
    assert health.state == State.WARNING
    assert health.reason == "last reconcile (#13) failed: read timeout on photos-bak"


def test_a_failed_reconcile_does_not_hide_what_the_run_before_it_found():
    out = run(verdict="out_of_sync", missing=1)
    failed = run(id=13, status="failed", verdict="", error="timeout")
    missing = lacking(NOW - timedelta(hours=1), missing=1)
    health = evaluate(facts(last_run=failed, last_verdict_run=out, lacking=missing), NOW)
    assert health.state == State.CRITICAL
    assert health.reasons[-1] == "last reconcile (#13) failed: timeout"


@pytest.mark.parametrize(
    ("since_last", "overdue"),
    [
        (timedelta(hours=2) - timedelta(seconds=1), None),
        (timedelta(hours=2), timedelta(hours=1)),
        (timedelta(hours=3), timedelta(hours=2)),
    ],
)
def test_a_scheduled_reconcile_is_overdue_at_twice_its_interval(since_last, overdue):
    hourly = facts(
        reconcile_every=timedelta(hours=1), last_verdict_run=run(created_at=NOW - since_last)
    )
    assert overdue_by(hourly, NOW) == overdue
    health = evaluate(hourly, NOW)
    if overdue is None:
        assert health.state == State.OK
    else:
        assert health.state == State.WARNING
        assert health.reason == f"last reconcile overdue by {duration(overdue)}"


def test_a_scheduled_pair_never_reconciled_is_overdue_from_when_it_was_added():
    fresh = facts(
        reconcile_every=timedelta(minutes=10),
        created_at=NOW - timedelta(minutes=25),
        last_run=None,
        last_verdict_run=None,
    )
    assert overdue_by(fresh, NOW) == timedelta(minutes=15)


def test_a_pair_reconciled_only_on_demand_is_never_overdue():
    old = facts(last_verdict_run=run(created_at=NOW - timedelta(days=90)))
    assert overdue_by(old, NOW) is None


def test_critical_reasons_come_before_warnings():
    out = run(verdict="out_of_sync", missing=1)
    missing = lacking(NOW - timedelta(hours=1), missing=1)
    health = evaluate(
        facts(last_run=out, last_verdict_run=out, lag_p95=timedelta(hours=1), lacking=missing),
        NOW,
    )
    assert health.state == State.CRITICAL
    assert health.reasons[0].startswith("1 object lacking")
    assert health.reasons[1].startswith("p95 lag 1 h")


def test_states_sort_worst_first():
    ordered = sorted(State, key=lambda s: s.rank)
    assert ordered == [State.CRITICAL, State.WARNING, State.UNKNOWN, State.OK, State.PAUSED]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=22, seconds=59), "22 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(hours=2, minutes=5), "2 h 5 min"),
        (timedelta(days=3), "3 d"),
        (timedelta(days=3, hours=4), "3 d 4 h"),
    ],
)
def test_durations_read_as_a_person_says_them(delta, text):
    assert duration(delta) == text


def test_every_reason_is_listed_for_alerts_and_pages():
    many = replace(facts(), lag_p95=timedelta(minutes=20), lacking=lacking(NOW, failed=1))
    assert len(evaluate(many, NOW).reasons) == 2


def test_objects_lacking_since_a_time_nobody_knows_are_critical_not_ok():
    health = evaluate(facts(lacking=Lacking(total=2, missing=2, since=None)), NOW)
    assert (health.state, health.reason) == (State.CRITICAL, "2 objects lacking: 2 missing")

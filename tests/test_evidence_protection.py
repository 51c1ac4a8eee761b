"""A month of protection checks from their results (pure): the state at the start, the
changes, the worst state and the share of time ok."""

from datetime import UTC, datetime, timedelta

from replication.evidence.protection import NOT_CHECKED, Result, months_of_checks, percent

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)  # 744 hours


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


def result(check: str, state: str, when: datetime, reason: str = "") -> Result:
    return Result(check, state, reason or state, when)


def test_a_check_that_stayed_ok_all_month_is_ok_all_of_it():
    start = {"backup_versioning": result("backup_versioning", "ok", START - timedelta(hours=1))}
    hourly = [result("backup_versioning", "ok", START + timedelta(hours=h)) for h in range(744)]
    (month,) = months_of_checks(start, hourly, START, END)
    assert (month.state_at_start, month.worst, month.changes) == ("ok", "ok", [])
    assert month.ok_ratio == 1 and month.ok_shown == "100.0%"


def test_each_change_of_state_is_listed_once_with_its_reason_and_counts_its_time():
    start = {"backup_versioning": result("backup_versioning", "ok", at(1) - timedelta(days=2))}
    results = [
        result("backup_versioning", "critical", at(5), "versioning is suspended"),
        result("backup_versioning", "critical", at(5, 6), "versioning is suspended"),
        result("backup_versioning", "warning", at(5, 12), "retention shorter than the window"),
        result("backup_versioning", "ok", at(6), "versioning is enabled"),
    ]
    (month,) = months_of_checks(start, results, START, END)
    assert [(c.at, c.from_state, c.to_state, c.reason) for c in month.changes] == [
        (at(5), "ok", "critical", "versioning is suspended"),
        (at(5, 12), "critical", "warning", "retention shorter than the window"),
        (at(6), "warning", "ok", "versioning is enabled"),
    ]
    assert month.worst == "critical"
    assert month.seconds == {"ok": 720 * 3600, "critical": 12 * 3600, "warning": 12 * 3600}
    assert month.ok_ratio == 720 / 744 and month.ok_shown == "96.7%"


def test_time_before_a_checks_first_result_is_not_checked_and_not_ok():
    (month,) = months_of_checks({}, [result("encryption", "ok", at(11))], START, END)
    assert month.state_at_start is None
    assert [(c.from_state, c.to_state) for c in month.changes] == [(None, "ok")]
    assert month.seconds[NOT_CHECKED] == 240 * 3600
    assert month.ok_ratio == 504 / 744 and month.worst == "ok"


def test_a_check_without_results_in_the_month_keeps_its_state_from_before():
    start = {
        "backup_public_access": result("backup_public_access", "warning", at(1) - timedelta(1))
    }
    (month,) = months_of_checks(start, [], START, END)
    assert (month.worst, month.ok_ratio, month.changes) == ("warning", 0, [])


def test_checks_come_in_the_posture_order_and_unknown_is_better_than_a_warning():
    results = [
        result("encryption", "unknown", at(2)),
        result("backup_versioning", "unknown", at(2)),
        result("backup_versioning", "warning", at(3)),
    ]
    months = months_of_checks({}, results, START, END)
    assert [m.check_id for m in months] == ["backup_versioning", "encryption"]
    assert [m.worst for m in months] == ["warning", "unknown"]


def test_a_share_of_time_is_truncated_never_rounded_up_to_100_percent():
    shares = (1, 0.99999, 720 / 744, 0.3, 0.00001, 0, None)
    assert [percent(r) for r in shares] == [
        "100.0%",
        "99.9%",
        "96.7%",
        "30.0%",
        "0.0%",
        "0.0%",
        "—",
    ]

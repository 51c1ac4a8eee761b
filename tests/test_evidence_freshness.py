"""Freshness maths, the health rule, months and the chart's geometry (pure, no database)."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from replication.evidence.charts import axis_floor, freshness_chart
from replication.evidence.counting import freshness_rows
from replication.evidence.facts import Objective, objective_at
from replication.evidence.freshness import (
    Freshness,
    format_objective,
    format_target,
    freshness_finding,
    month_problem,
    months_back,
    parse_month,
    window_days,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_freshness_is_the_share_of_copies_within_the_objective():
    fresh = Freshness(copies=2000, within=1990)
    assert fresh.ratio == 0.995
    assert fresh.late == 10
    assert fresh.shown == "99.5%"
    assert fresh.met is False


def test_no_copies_measure_nothing():
    fresh = Freshness(0, 0)
    assert fresh.ratio is None and fresh.met is None and fresh.burn_rate is None
    assert fresh.shown == "—"
    assert fresh.budget == fresh.budget_remaining == 0


def test_the_error_budget_is_the_late_copies_the_target_allows():
    fresh = Freshness(copies=10_000, within=9_996, target=Decimal("99.9"))
    assert fresh.budget == 10
    assert fresh.budget_remaining == 6
    assert fresh.burn_rate == pytest.approx(0.4)
    overspent = Freshness(copies=10_000, within=9_970)
    assert overspent.budget_remaining == -20
    assert overspent.burn_rate == pytest.approx(3.0)


def test_exactly_the_target_meets_it():
    assert Freshness(1000, 999, Decimal("99.9")).met is True
    assert Freshness(1000, 998, Decimal("99.9")).met is False


def test_a_share_is_truncated_never_rounded_up_onto_the_target_or_100():
    assert Freshness(100_000, 99_899).shown == "99.8%"
    assert Freshness(100_000, 99_999).shown == "99.9%"
    assert Freshness(7, 7).shown == "100.0%"
    assert Freshness(100_000, 99_989, Decimal("99.99")).shown == "99.98%"


def test_a_target_of_100_percent_has_no_budget_to_burn():
    fresh = Freshness(100, 100, Decimal("100"))
    assert fresh.met is True and fresh.budget == 0 and fresh.burn_rate is None


def test_freshness_below_the_target_over_30_days_is_a_warning_with_a_reason():
    finding = freshness_finding(Freshness(1000, 992), objective_seconds=900)
    assert finding == (
        "warning",
        "freshness 99.2% of copies within 15 min over 30 days, target 99.9%",
    )


def test_freshness_at_the_target_or_without_copies_is_no_finding():
    assert freshness_finding(Freshness(1000, 999), 900) is None
    assert freshness_finding(Freshness(0, 0), 900) is None


def test_objectives_and_targets_read_as_people_write_them():
    assert [format_objective(s) for s in (900, 3600, 90)] == ["15 min", "1 h", "90 s"]
    assert format_target(Decimal("99.900")) == "99.9%"
    assert format_target(Decimal("100.000")) == "100%"


def test_the_30_day_window_is_thirty_utc_days_today_included():
    first, end = window_days(NOW)
    assert (first, end) == (date(2026, 10, 22), date(2026, 11, 21))
    assert (end - first).days == 30


def test_thirteen_months_end_with_this_one():
    months = months_back(NOW)
    assert len(months) == 13
    assert months[0] == date(2025, 11, 1) and months[-1] == date(2026, 11, 1)


@pytest.mark.parametrize(
    ("text", "month"),
    [("2026-11", date(2026, 11, 1)), ("2026-13", None), ("26-11", None), ("2026-1", None)],
)
def test_months_are_given_as_year_dash_month(text, month):
    assert parse_month(text) == month


def test_a_month_in_the_future_or_before_the_pair_has_no_report():
    created = datetime(2026, 3, 15, tzinfo=UTC)
    assert "has not begun" in month_problem(date(2026, 12, 1), NOW, created)
    assert "did not exist in 2026-02" in month_problem(date(2026, 2, 1), NOW, created)
    assert month_problem(date(2026, 3, 1), NOW, created) is None
    assert month_problem(date(2026, 11, 1), NOW, created) is None


def test_copies_count_by_utc_day_and_a_lag_equal_to_the_objective_is_within():
    late_evening = datetime(2026, 11, 19, 23, 59, tzinfo=UTC)
    rows = freshness_rows(
        [
            (1, "copied", timedelta(seconds=900), late_evening),
            (1, "copied", timedelta(seconds=901), late_evening),
            (1, "failed", timedelta(seconds=1), late_evening),
            (1, "deleted", timedelta(seconds=1), late_evening),
            (1, "copied", timedelta(seconds=3), late_evening + timedelta(minutes=2)),
        ],
        {1: 900},
    )
    assert rows == [(1, date(2026, 11, 19), 900, 2, 1), (1, date(2026, 11, 20), 900, 1, 1)]


def test_the_objective_in_force_is_the_one_before_the_next_change():
    class Change:
        def __init__(self, at, before, after):
            self.at = at
            self.lag_objective_before, self.lag_objective_after = before, after
            self.target_before = self.target_after = Decimal("99.9")

    changes = [Change(NOW - timedelta(days=3), 900, 600)]
    current = Objective(600, Decimal("99.9"))
    assert objective_at(changes, current, NOW - timedelta(days=5)).seconds == 900
    assert objective_at(changes, current, NOW).seconds == 600


def test_the_chart_axis_starts_below_both_the_target_and_the_worst_bar():
    assert axis_floor([99.95, 100.0], 99.9) == 99.5
    assert axis_floor([97.2], 99.9) == 95.0
    chart = freshness_chart(
        [("01", Freshness(1000, 1000)), ("02", Freshness(1000, 990)), ("03", Freshness(0, 0))],
        Decimal("99.9"),
    )
    met, missed, empty = chart.bars
    assert (met.kind, missed.kind, empty.kind) == ("met", "missed", "empty")
    assert met.height == chart.height  # 100% reaches the top
    assert missed.height < chart.height - chart.target_y  # below the target line
    assert "10 late" in missed.title

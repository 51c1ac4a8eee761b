"""The dashboard's pure helpers: windows and buckets, chart geometry, CSV cells, wording."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from replication.dashboard import charts, humanize
from replication.dashboard.export import csv_lines, neutralise
from replication.dashboard.windows import WINDOWS, bucket_start, bucketise, window_named

NOW = datetime(2026, 11, 28, 12, 34, 56, tzinfo=UTC)


def test_unknown_window_names_fall_back_to_24_hours():
    assert window_named("7d").name == "7d"
    assert window_named("<script>").name == "24h"
    assert window_named(None).name == "24h"


@pytest.mark.parametrize("name", ["1h", "24h", "7d", "30d"])
def test_windows_cover_their_span_with_aligned_buckets_ending_now(name):
    window = WINDOWS[name]
    starts = window.buckets(NOW)
    assert starts[-1] <= NOW < starts[-1] + window.bucket
    assert starts[0] <= NOW - window.span + window.bucket
    assert all(b - a == window.bucket for a, b in itertools.pairwise(starts))
    assert all(int(s.timestamp()) % window.bucket_seconds == 0 for s in starts)


def test_bucket_start_aligns_on_the_epoch():
    assert bucket_start(NOW, 3600) == datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_bucketise_counts_copies_and_failures_and_takes_lag_of_copies_and_deletes():
    window = WINDOWS["1h"]
    minute = bucket_start(NOW, 60)
    rows = [
        (minute, 1.0, "copied"),
        (minute, 3.0, "copied"),
        (minute, 5.0, "deleted"),
        (minute, 99.0, "failed"),
        (minute, 50.0, "skipped"),
        (NOW - timedelta(hours=3), 7.0, "copied"),  # outside the window
    ]
    last = bucketise(rows, window, NOW)[-1]
    assert (last.copies, last.failures) == (2, 1)
    assert last.p50 == 3.0
    assert last.p99 == pytest.approx(4.96)
    assert bucketise(rows, window, NOW)[0].p50 is None


def test_nice_ceiling_rounds_up_to_readable_axis_maxima():
    assert [charts.nice_ceiling(v) for v in (0, 0.7, 1, 1.2, 2.2, 3, 7, 12, 460)] == [
        1.0,
        1.0,
        1,
        2,
        2.5,
        5,
        10,
        20,
        500,
    ]


def test_polylines_keep_gaps_and_stay_inside_the_box():
    lines = charts.polylines([1, 2, None, 4], width=30, height=10, top=4)
    assert lines == ["0,7.5 10,5", "25,0 30,0"]
    points = [p for line in lines for p in line.split()]
    assert all(0 <= float(p.split(",")[1]) <= 10 for p in points)


def test_sparkline_of_no_data_is_empty():
    assert charts.sparkline([None, None]).empty
    assert not charts.sparkline([None, 3.0, 4.0]).empty


def test_a_sparkline_of_a_single_hour_is_too_little_to_draw():
    """A freshly started pair has one hour of copies: a lone dot, said in words instead."""
    assert charts.sparkline([None] * 23 + [3.0]).too_little
    assert not charts.sparkline([None] * 22 + [2.0, 3.0]).too_little
    assert not charts.sparkline([None, None]).too_little  # empty, which says "no copies"


def test_charts_with_everything_in_one_bucket_are_too_little_to_draw():
    lines = charts.line_chart({"p50": [None, None, 1.0], "p95": [None, None, 2.0]})
    assert lines.filled == 1 and lines.too_little
    assert not charts.line_chart({"p50": [1.0, None, 2.0], "p95": [None] * 3}).too_little
    bars = charts.bar_chart([0, 0, 40], [0, 0, 2], ["a", "b", "c"])
    assert bars.filled == 1 and bars.too_little
    assert not charts.bar_chart([1, 0, 40], [0, 0, 0], ["a", "b", "c"]).too_little
    assert not charts.bar_chart([0, 0], [0, 0], ["a", "b"]).too_little  # empty instead


def test_line_chart_draws_the_objective_only_when_it_is_on_the_scale():
    near = charts.line_chart({"p95": [10, 20]}, height=100, reference=15)
    assert near.top == 20 and near.reference_y == 25
    far = charts.line_chart({"p95": [1, 2]}, reference=900)
    assert far.reference_y is None


def test_bar_chart_stacks_failures_on_copies():
    chart = charts.bar_chart([3, 0], [1, 0], ["a", "b"], width=20, height=40)
    copies, failures = chart.bars
    assert chart.top == 5
    assert (copies.kind, copies.height, copies.y) == ("copies", 24, 16)
    assert (failures.kind, failures.height, failures.y) == ("failures", 8, 8)
    assert failures.title == "a: 3 copied, 1 failed"


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+33", "'+33"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=x", "'\t=x"),
        ("a=b", "a=b"),
        (None, ""),
        (42, "42"),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe(cell, written):
    assert neutralise(cell) == written


def test_csv_lines_write_a_header_then_quoted_rows():
    lines = list(csv_lines([["a,b", 'say "hi"']], header=["key", "note"]))
    assert lines == ["key,note\r\n", '"a,b","say ""hi"""\r\n']


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.42, "0.4 s"),
        (3, "3 s"),
        (14.4, "14 s"),
        (200, "3 min 20 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (273_600, "3 d 4 h"),
        (None, ""),
    ],
)
def test_durations_read_at_a_glance(seconds, text):
    assert humanize.duration(seconds) == text


def test_counts_group_thousands():
    assert humanize.count(1234567) == "1\u2009234\u2009567"

"""Chart series from the database: PostgreSQL's buckets and percentiles equal Python's."""

from datetime import UTC, datetime, timedelta

import pytest

from replication.dashboard.series import series_by_pair
from replication.dashboard.windows import WINDOWS
from tests.factories import make_pair, record_events

NOW = datetime(2026, 11, 28, 12, 30, 20, tzinfo=UTC)


def copy_at(finished: datetime, lag_s: float, status: str = "copied") -> dict:
    return {
        "status": status,
        "event_time": finished - timedelta(seconds=lag_s),
        "started_at": finished - timedelta(seconds=lag_s),
        "finished_at": finished,
    }


@pytest.mark.django_db
def test_series_buckets_counts_and_lag_percentiles_per_pair():
    pair, other = make_pair(), make_pair()
    in_last_minute = NOW.replace(second=5)
    record_events(
        pair,
        copy_at(in_last_minute, 1.0),
        copy_at(in_last_minute, 2.0),
        copy_at(in_last_minute, 9.0),
        copy_at(in_last_minute, 500.0, status="failed"),
        copy_at(NOW - timedelta(minutes=10), 4.0),
        copy_at(NOW - timedelta(hours=2), 4.0),  # outside the hour
    )
    series = series_by_pair([pair.pk, other.pk], WINDOWS["1h"], NOW)
    buckets = series[pair.pk]
    assert len(buckets) == 60
    last = buckets[-1]
    assert last.start == datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
    assert (last.copies, last.failures) == (3, 1)
    assert last.p50 == pytest.approx(2.0)
    assert last.p99 == pytest.approx(8.86)
    assert sum(b.copies for b in buckets) == 4
    assert buckets[-11].p95 == pytest.approx(4.0)
    assert all(b.copies == 0 and b.p50 is None for b in series[other.pk])

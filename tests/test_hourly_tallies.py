"""Hourly tallies: ingest counts every new result into its pair's hour and lag bucket, and
the charts that span days read them instead of the events."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from replication import tasks
from replication.dashboard import histogram
from replication.dashboard.series import (
    day_totals,
    series_by_pair,
    sparklines,
    window_lag,
)
from replication.dashboard.windows import WINDOWS
from replication.ingest import retention
from replication.ingest.folding import fold_closed_hours, fold_hour
from replication.ingest.tallies import rebuild_hourly
from replication.models import CopyEvent, HourlyTally, HourlyTotal
from replication.models.tallies import FOLDED, SHARDS
from tests.factories import make_pair, record_events
from tests.postgresql import requires_postgresql

NOW = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)


def copy_at(finished: datetime, lag_s: float, status: str = "copied", **fields) -> dict:
    lagged = finished - timedelta(seconds=lag_s)
    return {"status": status, "event_time": lagged, "started_at": lagged, "finished_at": finished,
            **fields}  # fmt: skip


def tallies(pair) -> dict[tuple, int]:
    """(hour, status, lag bucket) -> copies, shards summed."""
    result: dict[tuple, int] = {}
    for row in HourlyTally.objects.filter(pair=pair):
        key = (row.hour, row.status, row.lag_bucket)
        result[key] = result.get(key, 0) + row.copies
    return result


@pytest.mark.django_db
def test_ingest_counts_each_result_in_its_hour_status_and_lag_bucket():
    pair = make_pair()
    record_events(
        pair,
        copy_at(NOW, 1.0),
        copy_at(NOW - timedelta(minutes=10), 1.0),
        copy_at(NOW, 30.0),
        copy_at(NOW - timedelta(hours=3), 0.05, status="failed"),
    )
    hour = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert tallies(pair) == {
        (hour, "copied", histogram.bucket_index(1.0)): 2,
        (hour, "copied", histogram.bucket_index(30.0)): 1,
        (hour - timedelta(hours=3), "failed", 0): 1,
    }


@pytest.mark.django_db
def test_a_repeated_report_is_counted_once():
    pair = make_pair()
    event = copy_at(NOW, 2.0, key="photos/a.jpg", sequencer="0055B98E6A4B9E0A33")
    record_events(pair, event)
    record_events(pair, event)
    assert sum(tallies(pair).values()) == 1


@pytest.mark.django_db
def test_the_database_and_python_file_a_lag_on_a_bound_in_the_same_bucket():
    pair = make_pair()
    bound = histogram.BOUNDS[10]
    record_events(pair, copy_at(NOW, bound - 0.001), copy_at(NOW, bound))
    buckets = sorted(bucket for (_, _, bucket) in tallies(pair))
    assert buckets == [histogram.bucket_index(bound - 0.001), histogram.bucket_index(bound)]
    assert buckets == [10, 11]


@pytest.mark.django_db
def test_rebuilding_from_the_events_gives_what_ingest_counted():
    pair, other = make_pair(), make_pair()
    record_events(pair, *(copy_at(NOW - timedelta(hours=h), 0.5 + h) for h in range(30)))
    record_events(other, copy_at(NOW, 3.0), copy_at(NOW, 3.0, status="failed"))
    counted = (tallies(pair), tallies(other))

    assert rebuild_hourly() == HourlyTally.objects.count()
    assert (tallies(pair), tallies(other)) == counted


@pytest.mark.django_db
def test_day_long_charts_count_and_estimate_lag_from_the_tallies():
    pair = make_pair()
    record_events(
        pair,
        *(copy_at(NOW - timedelta(minutes=m), 2.0) for m in range(0, 20)),
        copy_at(NOW - timedelta(minutes=5), 900.0, status="failed"),
        copy_at(NOW - timedelta(hours=5), 40.0),
        copy_at(NOW - timedelta(hours=30), 40.0),  # outside the day
    )
    day = sparklines([pair.pk], NOW)[pair.pk]
    assert len(day) == 24
    assert (day[-1].copies, day[-1].failures) == (20, 1)
    assert sum(b.copies for b in day) == 21
    # Every estimate lies inside the bucket that holds the exact value.
    below_2, above_2 = histogram.BOUNDS[
        histogram.bucket_index(2.0) - 1 : histogram.bucket_index(2.0) + 1
    ]
    assert below_2 <= day[-1].p50 <= day[-1].p99 <= above_2
    assert day[-6].p95 == pytest.approx(40.0, rel=0.34)
    assert day[0].p50 is None
    # The overview counts every pair's day without the histograms: the same figures.
    assert day_totals([pair.pk], NOW)[pair.pk] == (21, 1)

    week = series_by_pair([pair.pk], WINDOWS["7d"], NOW)[pair.pk]
    assert sum(b.copies for b in week) == 22
    assert sum(b.failures for b in week) == 1


@pytest.mark.django_db
def test_window_lag_over_days_reads_the_tallies_and_over_a_day_the_events():
    pair = make_pair()
    record_events(pair, *(copy_at(NOW - timedelta(hours=h), 10.0) for h in range(48)))
    CopyEvent.objects.all().delete()  # only the tallies know the week now

    week = window_lag(pair.pk, WINDOWS["7d"], NOW)
    assert week[0].total_seconds() == pytest.approx(10.0, rel=0.34)
    assert window_lag(pair.pk, WINDOWS["24h"], NOW) is None


@pytest.mark.django_db
def test_retention_deletes_the_tallies_of_hours_wholly_past_it(settings):
    settings.EVENT_RETENTION_DAYS = 1
    pair = make_pair()
    record_events(
        pair,
        copy_at(NOW - timedelta(days=1, hours=2), 1.0),
        copy_at(NOW - timedelta(days=1, minutes=10), 1.0),  # its hour straddles the cutoff
        copy_at(NOW, 1.0),
    )
    fold_closed_hours(now=NOW)
    retention.purge_expired_events(now=NOW)
    hours = sorted({hour for (hour, _, _) in tallies(pair)})
    assert hours == [datetime(2026, 11, 27, 12, tzinfo=UTC), datetime(2026, 11, 28, 12, tzinfo=UTC)]
    totals = HourlyTotal.objects.filter(pair=pair).values_list("hour", flat=True)
    assert list(totals) == [datetime(2026, 11, 27, 12, tzinfo=UTC)]


# --- Folding closed hours and their roll-up ---------------------------------------------------


def overview_figures(pair) -> tuple:
    """What the overview reads of a pair's day: its sparkline's buckets and its day totals."""
    day = sparklines([pair.pk], NOW)[pair.pk]
    return [(b.start, b.copies, b.failures, b.p50, b.p95, b.p99) for b in day], day_totals(
        [pair.pk], NOW
    )[pair.pk]


@pytest.mark.django_db
def test_folding_sums_closed_hours_shards_into_one_folded_row_and_leaves_the_current_hour():
    pair = make_pair()
    closed, current = datetime(2026, 11, 28, 9, tzinfo=UTC), datetime(2026, 11, 28, 12, tzinfo=UTC)
    for hour in (closed, current):
        HourlyTally.objects.bulk_create(
            HourlyTally(pair=pair, hour=hour, status="copied", lag_bucket=8, shard=s, copies=s + 1)
            for s in range(SHARDS)
        )

    assert fold_closed_hours(now=NOW) == 1

    folded = HourlyTally.objects.get(pair=pair, hour=closed)
    assert (folded.shard, folded.copies) == (FOLDED, sum(range(1, SHARDS + 1)))
    assert HourlyTally.objects.filter(pair=pair, hour=current).count() == SHARDS
    assert not HourlyTotal.objects.filter(hour=current).exists()
    assert fold_closed_hours(now=NOW) == 0  # nothing left to fold


@pytest.mark.django_db
def test_folding_rolls_each_closed_hour_up_into_its_pairs_copies_failures_and_lag():
    pair, other = make_pair(), make_pair()
    hour = datetime(2026, 11, 28, 10, tzinfo=UTC)
    record_events(
        pair,
        *(copy_at(hour + timedelta(minutes=m), 2.0) for m in range(10)),
        copy_at(hour + timedelta(minutes=30), 40.0),
        copy_at(hour + timedelta(minutes=31), 1.0, status="deleted"),
        copy_at(hour + timedelta(minutes=40), 0.5, status="failed"),
    )
    record_events(other, copy_at(hour + timedelta(minutes=5), 3.0))

    fold_closed_hours(now=NOW)

    total = HourlyTotal.objects.get(pair=pair, hour=hour)
    assert (total.copies, total.failures) == (11, 1)
    expected = histogram.percentiles(
        {
            histogram.bucket_index(2.0): 10,
            histogram.bucket_index(40.0): 1,
            histogram.bucket_index(1.0): 1,
        }
    )
    assert (total.lag_p50, total.lag_p95, total.lag_p99) == pytest.approx(expected)
    assert HourlyTotal.objects.get(pair=other, hour=hour).copies == 1


@pytest.mark.django_db
def test_the_overview_reads_the_same_day_before_and_after_folding():
    pair = make_pair()
    record_events(
        pair,
        *(copy_at(NOW - timedelta(hours=h, minutes=m), 1.0 + h) for h in range(26) for m in (1, 7)),
        copy_at(NOW - timedelta(hours=4), 300.0, status="failed"),
        copy_at(NOW - timedelta(minutes=3), 0.2),  # the current hour, never folded
    )
    before = overview_figures(pair)

    fold_closed_hours(now=NOW)

    assert HourlyTotal.objects.filter(pair=pair).exists()
    assert overview_figures(pair) == before
    assert before[1] == (24 * 2 + 1, 1)  # two copies in each of the day's hours, one more now


@pytest.mark.django_db
def test_a_late_report_for_a_folded_hour_counts_at_once_and_is_folded_into_it_next_time():
    pair = make_pair()
    hour = datetime(2026, 11, 28, 8, tzinfo=UTC)
    record_events(pair, copy_at(hour + timedelta(minutes=10), 1.0))
    fold_closed_hours(now=NOW)

    record_events(pair, copy_at(hour + timedelta(minutes=50), 20.0))  # reported late
    late = overview_figures(pair)
    (bucket,) = [b for b in late[0] if b[0] == hour]
    assert bucket[1:3] == (2, 0)
    assert late[1] == (2, 0)

    assert fold_closed_hours(now=NOW) == 1
    assert HourlyTotal.objects.get(pair=pair, hour=hour).copies == 2
    assert HourlyTally.objects.filter(pair=pair, hour=hour).exclude(shard=FOLDED).count() == 0
    assert overview_figures(pair) == late


@requires_postgresql("two connections writing at once")
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_report_counted_while_its_hour_is_being_folded_is_neither_lost_nor_counted_twice():
    pair = make_pair()
    hour = datetime(2026, 11, 28, 9, tzinfo=UTC)
    HourlyTally.objects.create(
        pair=pair, hour=hour, status="copied", lag_bucket=3, shard=2, copies=5
    )
    taken, errors = threading.Event(), []

    def fold_slowly():
        try:
            with transaction.atomic():
                fold_hour(hour)
                taken.set()
                time.sleep(0.5)  # the fold holds the rows it took until it commits
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    folder = threading.Thread(target=fold_slowly)
    folder.start()
    assert taken.wait(timeout=10)
    # Ingest's upsert of the same shard and bucket, as its statement makes it.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO replication_hourlytally "
            "(pair_id, hour, status, lag_bucket, shard, copies) VALUES (%s, %s, 'copied', 3, 2, 4) "
            "ON CONFLICT (pair_id, hour, status, lag_bucket, shard) "
            "DO UPDATE SET copies = replication_hourlytally.copies + excluded.copies",
            [pair.pk, hour],
        )
    folder.join(timeout=10)

    assert errors == []
    assert HourlyTotal.objects.get(pair=pair, hour=hour).copies == 5  # what the fold took
    assert overview_figures(pair)[1] == (9, 0)  # and the late 4, counted unfolded
    fold_closed_hours(now=NOW)
    assert HourlyTotal.objects.get(pair=pair, hour=hour).copies == 9
    assert overview_figures(pair)[1] == (9, 0)


def test_beat_folds_closed_hours_every_five_minutes(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["fold-closed-hours"]
    assert entry["task"] == tasks.fold_closed_hours.name
    assert entry["schedule"] == 300.0


@pytest.mark.django_db
def test_charts_read_a_lag_bucket_counted_by_several_shards_and_statuses_as_one():
    pair = make_pair()
    hour = NOW.replace(minute=0) - timedelta(hours=1)
    rows = [("copied", 8, 0, 3), ("copied", 8, 1, 2), ("deleted", 8, 0, 5), ("copied", 12, 2, 10)]
    HourlyTally.objects.bulk_create(
        HourlyTally(pair=pair, hour=hour, status=status, lag_bucket=b, shard=shard, copies=n)
        for status, b, shard, n in rows
    )
    (bucket,) = [b for b in sparklines([pair.pk], NOW)[pair.pk] if b.start == hour]
    assert (bucket.copies, bucket.failures) == (15, 0)
    assert (bucket.p50, bucket.p95, bucket.p99) == histogram.percentiles({8: 10, 12: 10})

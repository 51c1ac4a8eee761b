"""Freshness counted at ingest: per pair and UTC day, against the objective in force when
each copy was stored, kept whatever the events' retention."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replication.evidence import counting
from replication.evidence.facts import health_findings, pair_freshness, read_once, summaries
from replication.ingest.retention import purge_expired_events
from replication.models import CopyEvent, FreshnessTally, ObjectiveChange
from tests.factories import make_pair, record_events

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def copy(finished: datetime, lag_seconds: float, status: str = "copied", **fields) -> dict:
    return {
        "status": status,
        "event_time": finished - timedelta(seconds=lag_seconds),
        "started_at": finished - timedelta(seconds=lag_seconds),
        "finished_at": finished,
        **fields,
    }


def counts(pair) -> tuple[int, int]:
    totals = FreshnessTally.objects.filter(pair=pair).aggregate(n=Sum("copies"), w=Sum("within"))
    return totals["n"] or 0, totals["w"] or 0


def test_ingest_counts_copies_within_the_objective_per_utc_day(pair):
    morning = NOW.replace(hour=8)
    record_events(
        pair,
        copy(morning, 5),
        copy(morning, 900),  # exactly the objective: within
        copy(morning, 1800),
        copy(morning, 5, status="failed", error_code="AccessDenied"),
        copy(morning - timedelta(days=1), 30),
    )
    rows = {
        (t.day, t.objective_seconds): (t.copies, t.within)
        for t in FreshnessTally.objects.filter(pair=pair)
    }
    assert rows == {(date(2026, 11, 20), 900): (3, 2), (date(2026, 11, 19), 900): (1, 1)}


def test_a_repeated_post_is_counted_once(pair):
    event = copy(NOW - timedelta(hours=1), 5, key="img/once.jpg", sequencer="0A")
    record_events(pair, event)
    record_events(pair, event)
    assert counts(pair) == (1, 1)


def test_a_copy_counts_against_the_objective_in_force_when_it_was_stored(pair):
    record_events(pair, copy(NOW - timedelta(hours=3), 700))  # within 15 min
    pair.lag_objective_seconds = 600
    pair.save()
    record_events(pair, copy(NOW - timedelta(hours=2), 700))  # late against 10 min
    by_objective = dict(
        FreshnessTally.objects.filter(pair=pair)
        .values_list("objective_seconds")
        .annotate(w=Sum("within"))
    )
    assert by_objective == {900: 1, 600: 0}
    change = ObjectiveChange.objects.get(pair=pair)
    assert (change.lag_objective_before, change.lag_objective_after) == (900, 600)
    assert change.at == NOW
    panel = pair_freshness(pair, NOW)
    assert panel.month.freshness.copies == 2 and panel.month.freshness.within == 1
    assert panel.changes == [change]


def test_saving_a_pair_without_changing_its_objective_records_no_change(pair):
    pair.grace_seconds = 120
    pair.save()
    assert not ObjectiveChange.objects.exists()


def test_retention_deletes_events_but_never_the_freshness_counts(pair, settings):
    settings.EVENT_RETENTION_DAYS = 7
    record_events(pair, copy(NOW - timedelta(days=40), 5), copy(NOW - timedelta(days=40), 2000))
    assert purge_expired_events(NOW) == 2
    assert not CopyEvent.objects.exists()
    assert counts(pair) == (2, 1)
    assert pair_freshness(pair, NOW).months[-2].freshness.copies == 2


def test_counts_are_kept_thirteen_months_then_pruned(pair):
    record_events(
        pair,
        copy(datetime(2025, 11, 1, 0, 5, tzinfo=UTC), 5),
        copy(datetime(2025, 10, 31, 23, 55, tzinfo=UTC), 5),
    )
    counting.upkeep(NOW)  # also folds shards (PostgreSQL): one row per day remains
    assert list(FreshnessTally.objects.values_list("day", "shard", "copies")) == [
        (date(2025, 11, 1), 0, 1)
    ]


def test_rebuilding_from_events_gives_the_counts_ingest_kept(pair):
    record_events(pair, *[copy(NOW - timedelta(hours=h), 300 * h) for h in range(12)])
    kept = counts(pair)
    counting.rebuild_freshness()
    assert counts(pair) == kept == (12, 4)


def test_health_findings_warn_below_the_target_in_one_query(django_assert_num_queries):
    slow, fine, quiet = make_pair(), make_pair(), make_pair()
    record_events(slow, *[copy(NOW - timedelta(hours=1), 60 if n else 3600) for n in range(100)])
    record_events(fine, *[copy(NOW - timedelta(hours=1), 60) for _ in range(10)])
    with django_assert_num_queries(1):  # the pairs are health's, never read again
        findings = health_findings([slow, fine, quiet], NOW)
    assert findings == {
        slow.pk: [
            ("warning", "freshness 99.0% of copies within 15 min over 30 days, target 99.9%")
        ],
        fine.pk: [],
        quiet.pk: [],
    }


def test_a_page_reads_the_freshness_health_read_at_the_same_instant_once(
    pair, django_assert_num_queries
):
    # The overview and /metrics show the figures health's finding was computed from.
    record_events(pair, *[copy(NOW - timedelta(hours=1), 60 if n else 3600) for n in range(10)])
    with read_once():
        with django_assert_num_queries(1):
            health_findings([pair], NOW)
            shown = summaries([pair], NOW)[pair.pk]
        with django_assert_num_queries(1):  # another instant is read afresh
            summaries([pair], NOW + timedelta(seconds=1))
    assert (shown.window.copies, shown.window.within) == (10, 9)
    with django_assert_num_queries(1):  # outside a request's scope nothing is kept
        assert summaries([pair], NOW)[pair.pk] == shown


def test_the_30_day_window_leaves_out_older_copies(pair):
    record_events(pair, copy(NOW - timedelta(days=31), 3600), copy(NOW - timedelta(days=29), 5))
    window = summaries([pair], NOW)[pair.pk].window
    assert (window.copies, window.within) == (1, 1)


# Copies finished within the thirteen months before NOW, lags around the objective.
copies_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=390 * 24 * 60),  # minutes before NOW
        st.integers(min_value=0, max_value=1800),  # lag, seconds
        st.sampled_from(["copied", "copied", "copied", "failed", "skipped"]),
    ),
    max_size=60,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(copies=copies_strategy, objective=st.sampled_from([60, 900, 1200]))
def test_monthly_freshness_from_the_counts_equals_the_figure_recomputed_from_events(
    copies, objective
):
    pair = make_pair(lag_objective_seconds=objective)
    if copies:
        record_events(
            pair,
            *[
                copy(NOW - timedelta(minutes=minutes), lag, status=status)
                for minutes, lag, status in copies
            ],
        )
    panel = pair_freshness(pair, NOW)
    events = CopyEvent.objects.filter(pair=pair, status="copied")
    for month in panel.months:
        start = datetime(month.month.year, month.month.month, 1, tzinfo=UTC)
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
        in_month = events.filter(finished_at__gte=start, finished_at__lt=end)
        within = in_month.filter(lag__lte=timedelta(seconds=objective)).count()
        assert (month.freshness.copies, month.freshness.within) == (in_month.count(), within)
    window = events.filter(finished_at__gte=datetime(2026, 10, 22, tzinfo=UTC))
    assert panel.window.copies == window.count()
    assert panel.window.within == window.filter(lag__lte=timedelta(seconds=objective)).count()

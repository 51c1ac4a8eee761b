"""The demo's month of history: the story (pure), then posted through the real ingest API."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from replication.demo import history, scenario, seed
from replication.evidence.facts import pair_freshness
from replication.evidence.freshness import month_start, previous_month
from replication.evidence.report import build_report
from replication.models import BucketPair, CopyEvent, HealthChange, ObjectState, ReconcileRun

NOW = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)
PHOTOS, LOGS, INVOICES = scenario.PAIRS


def test_every_day_of_the_month_has_copies_and_a_reconcile_all_in_the_past():
    month = history.plan_history(LOGS, NOW)
    days = {c.event_time.date() for c in month.copies}
    assert len(days) == history.DAYS
    assert all(c.finished_at < NOW for c in month.copies)
    assert len(month.runs) == history.DAYS
    assert all(run.verdict == "in_sync" for run in month.runs)


def test_photos_has_a_bad_afternoon_with_copies_over_the_objective():
    month = history.plan_history(PHOTOS, NOW)
    late = [c for c in month.copies if c.finished_at - c.event_time > timedelta(minutes=15)]
    assert late
    assert {c.event_time.date() for c in late} == {
        (NOW - timedelta(days=history.BAD_AFTERNOON_DAYS_AGO)).date()
    }
    assert [c.to_state for c in month.changes] == ["ok", "warning", "ok"]


def test_invoices_fail_over_a_weekend_until_a_monday_repair():
    month = history.plan_history(INVOICES, NOW)
    failed = [c for c in month.copies if c.status == "failed"]
    assert failed and all(c.error_code == "AccessDenied" for c in failed)
    assert {c.event_time.weekday() for c in failed} <= {4, 5, 6}  # Friday night to Sunday
    (repair,) = [r for r in month.runs if r.repair]
    assert repair.at.weekday() == 0 and repair.repaired == len(failed)
    assert sorted(month.repaired_keys) == sorted(c.key for c in failed)
    after = [r for r in month.runs if r.at > repair.at]
    assert after and all(r.verdict == "in_sync" for r in after)
    assert [c.to_state for c in month.changes] == ["ok", "warning", "critical", "ok"]


@pytest.mark.usefixtures("local_s3")
def test_the_history_is_posted_through_the_ingest_api_and_shows_in_last_months_report(
    transactional_db, live_server
):
    plan = replace(INVOICES, objects=5, denied=(), unannounced=0)
    key, _ = seed.reset_database([plan])
    lines: list[str] = []
    demo = seed.Demo(f"{live_server.url}/api/v1/events", key, say=lines.append, plans=[plan])
    now = datetime.now(UTC)

    history.seed_month(demo.functions, [plan], lines.append, now=now)

    told = history.plan_history(plan, now)
    pair = BucketPair.objects.get(name=plan.name)
    assert CopyEvent.objects.filter(pair=pair).count() == len(told.copies)
    assert not ObjectState.objects.filter(pair=pair).open_failures().exists()
    (repair,) = ReconcileRun.objects.filter(pair=pair, repair=True)
    # "in sync after repair: 28 missing copied", never "0 copied, 28 not copied".
    assert repair.verdict == "in_sync" and repair.repaired_missing == repair.missing > 0
    assert list(
        HealthChange.objects.filter(pair=pair)
        .order_by("sequence")
        .values_list("to_state", flat=True)
    ) == ["ok", "warning", "critical", "ok"]
    assert pair.created_at < now - timedelta(days=history.DAYS)
    copied = sum(c.status == "copied" for c in told.copies)
    panel = pair_freshness(pair, now)
    assert sum(m.freshness.copies for m in panel.months) == copied
    report = build_report(pair, previous_month(month_start(now.date())), now)
    assert report.freshness.copies > 0 and report.in_sync_days > 0
    assert "days of history" in lines[-1]

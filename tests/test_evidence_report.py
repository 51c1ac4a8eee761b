"""The monthly report (page, CSV, command), the pair page's freshness panel, the overview's
30-day figure and /metrics: the same numbers everywhere, in a bounded number of queries."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from replication.evidence.facts import pair_freshness
from replication.evidence.report import build_report
from replication.models import (
    AlertChannel,
    HealthChange,
    Notification,
    ProtectionResult,
    ReconcileRun,
)
from replication.monitoring.metrics import exposition
from tests.factories import make_pair, record_events

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CREATED = datetime(2026, 9, 10, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def viewer(client):
    client.force_login(User.objects.create_user("auditor", password="pw"))


@pytest.fixture
def photos():
    with time_machine.travel(CREATED, tick=False):
        return make_pair(name="photos", source_bucket="photos-src", backup_bucket="photos-bak")


def copies(day: datetime, n: int, late: int = 0) -> list[dict]:
    """``n`` copies finished on ``day``, the last ``late`` of them 20 minutes late."""
    return [
        {
            "event_time": day + timedelta(minutes=i, seconds=-1200 if i >= n - late else -4),
            "started_at": day + timedelta(minutes=i, seconds=-1),
            "finished_at": day + timedelta(minutes=i),
        }
        for i in range(n)
    ]


def run(pair, at: datetime, verdict: str = "in_sync", **fields) -> ReconcileRun:
    values = {
        "status": "succeeded",
        "verdict": verdict,
        "started_at": at,
        "finished_at": at + timedelta(seconds=40),
    }
    created = ReconcileRun.objects.create(pair=pair, **(values | fields))
    ReconcileRun.objects.filter(pk=created.pk).update(created_at=at)
    created.refresh_from_db()
    return created


def october(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


@pytest.fixture
def october_history(photos):
    """October: 300 copies a day on the 1st-3rd, a bad 2nd; runs in sync except one out of
    sync on the 2nd, repaired, in sync again on the 3rd; a warning and its alert."""
    record_events(photos, *copies(october(1), 300), *copies(october(2), 300, late=6))
    record_events(photos, *copies(october(3), 300, late=1))
    run(photos, october(1))
    bad = run(photos, october(2), "out_of_sync", missing=4, mismatched=1, repair=True, repaired=5)
    good = run(photos, october(3))
    channel = AlertChannel.objects.create(name="ops", kind="webhook", target="https://ops.test/x")
    change = HealthChange.objects.create(
        pair=photos, sequence=1, to_state="warning", reason="4 objects missing", at=october(2, 11)
    )
    Notification.objects.create(
        change=change,
        channel=channel,
        kind="alert",
        state="warning",
        reason="4 objects missing",
        status="sent",
        created_at=october(2, 11),
        sent_at=october(2, 11),
    )
    return bad, good


def test_report_shows_freshness_worst_days_coverage_health_and_alerts(
    client, viewer, photos, october_history
):
    bad, good = october_history
    body = client.get("/pairs/photos/report/2026-10/").content.decode()
    assert "photos, October 2026" in body and "target missed" in body
    assert "99.2%" in body  # 893 of 900 within 15 min
    assert "2026-10-02" in body  # the worst day
    assert "2 of 31 days" in body  # the 2nd had only an out-of-sync run
    assert f"#{bad.pk}" in body and "4 missing, 1 mismatched" in body
    assert f"in sync again at run #{good.pk}, 2026-10-03 10:00 UTC (1 d later)" in body
    assert "repaired 5" in body
    assert "Protection checks: not recorded (no check ran this month)." in body
    assert "Restore drills: none ran this month." in body
    assert "4 objects missing" in body and "1 alert sent" in body
    assert "<svg" in body


def test_report_figures_equal_the_pair_page_figures_for_the_same_month(client, viewer, photos):
    record_events(photos, *copies(NOW - timedelta(days=3), 500, late=2))
    record_events(photos, *copies(NOW - timedelta(hours=5), 200, late=1))
    panel = pair_freshness(photos, NOW).month.freshness
    report = build_report(photos, NOW.date().replace(day=1), NOW).freshness
    assert (report.copies, report.within, report.budget_remaining) == (700, 697, -3)
    assert (panel.copies, panel.within, panel.budget_remaining) == (700, 697, -3)
    page = client.get("/pairs/photos/").content.decode()
    report_page = client.get("/pairs/photos/report/2026-11/").content.decode()
    assert panel.shown == "99.5%"
    assert panel.shown in page and panel.shown in report_page


def test_report_says_when_the_objective_changed_and_counts_each_copy_against_its_own(
    client, viewer, photos
):
    with time_machine.travel(october(10), tick=False):
        record_events(
            photos,
            {
                "event_time": october(10) - timedelta(seconds=700),
                "started_at": None,
                "finished_at": october(10),
            },
        )
        photos.lag_objective_seconds = 600
        photos.save()
        record_events(
            photos,
            {
                "event_time": october(10) - timedelta(seconds=700),
                "started_at": None,
                "finished_at": october(10),
            },
        )
    report = build_report(photos, october(1).date(), NOW)
    assert (report.freshness.copies, report.freshness.within) == (2, 1)
    assert report.objective_at_start.seconds == 900 and report.objective.seconds == 600
    body = client.get("/pairs/photos/report/2026-10/").content.decode()
    assert "The objective changed on 2026-10-10 10:00 UTC" in body
    assert "15 min → 10 min" in body


@pytest.mark.parametrize(
    ("month", "line"),
    [
        ("2026-12", "2026-12 has not begun yet"),
        ("2026-08", "The pair did not exist in 2026-08: it was registered on 2026-09-10 UTC."),
        ("2026-13", "is not a month: give it as YYYY-MM."),
    ],
)
def test_a_month_without_a_report_is_a_404_with_one_clear_line(client, viewer, photos, month, line):
    for url in (f"/pairs/photos/report/{month}/", f"/pairs/photos/report/{month}.csv"):
        response = client.get(url)
        assert response.status_code == 404
        assert line in response.content.decode()


def test_report_asks_for_a_login(client, photos):
    response = client.get("/pairs/photos/report/2026-10/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_csv_carries_the_same_figures_in_utc_with_text_neutralised(
    client, viewer, photos, october_history
):
    HealthChange.objects.filter(pair=photos).update(reason="=HYPERLINK(evil)")
    response = client.get("/pairs/photos/report/2026-10.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="photos-report-2026-10.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["section", "at_utc", "item", "value", "detail"]
    facts = {(r[0], r[2]): r for r in rows}
    assert facts["freshness", "copies"][3] == "900"
    assert facts["freshness", "late"][3] == "7"
    assert facts["freshness", "error_budget_remaining"][3] == "-7"
    assert facts["reconcile", "days_in_sync"][3:] == ["2", "of 31 days"]
    assert facts["health_change", "new -> warning"][1] == "2026-10-02T11:00:00Z"
    assert facts["health_change", "new -> warning"][4] == "'=HYPERLINK(evil)"
    assert facts["protection", "recorded"][3] == "no"


def check(pair, check_id: str, state: str, at: datetime, reason: str = "") -> ProtectionResult:
    """One stored protection result (none of them the latest: the report reads history)."""
    return ProtectionResult.objects.create(
        pair=pair,
        check_id=check_id,
        state=state,
        reason=reason or f"{check_id} {state}",
        checked_at=at,
        is_latest=False,
    )


@pytest.fixture
def october_protection(photos):
    """Versioning ok until it was suspended on the 5th for a day; encryption first checked
    on the 11th; public access a warning since September and not checked in October."""
    check(photos, "backup_versioning", "ok", october(1, 0) - timedelta(days=1), "enabled")
    check(photos, "backup_public_access", "warning", datetime(2026, 9, 20, tzinfo=UTC), "open")
    for day in range(1, 32):
        for hour in (0, 6, 12, 18):
            at = october(day, hour)
            bad = october(5, 0) <= at < october(6, 0)
            reason = "versioning is suspended" if bad else "enabled"
            check(photos, "backup_versioning", "critical" if bad else "ok", at, reason)
            if day >= 11:
                check(photos, "encryption", "ok", at, "SSE-S3")


def test_report_shows_each_checks_month_its_changes_worst_state_and_time_ok(
    client, viewer, photos, october_protection
):
    section = build_report(photos, october(1).date(), NOW).protection
    assert section.recorded
    versioning, public, encryption = section.checks
    assert (versioning.state_at_start, versioning.worst, versioning.ok_shown) == (
        "ok",
        "critical",
        "96.7%",
    )
    assert [(c.at, c.from_state, c.to_state) for c in section.changes] == [
        (october(5, 0), "ok", "critical"),
        (october(6, 0), "critical", "ok"),
        (october(11, 0), None, "ok"),
    ]
    assert (public.state_at_start, public.worst, public.ok_ratio) == ("warning", "warning", 0)
    assert (encryption.state_at_start, encryption.ok_ratio) == (None, 504 / 744)
    body = client.get("/pairs/photos/report/2026-10/").content.decode()
    protection = body[body.index('id="protection"') : body.index('id="drills"')]
    assert "not recorded" not in protection
    assert "Backup versioning" in protection and "96.7%" in protection
    assert "2026-10-05 00:00 UTC" in protection and "versioning is suspended" in protection
    assert "from 2026-10-01 00:00 UTC to 2026-11-01 00:00 UTC" in protection
    rows = list(csv.reader(io.StringIO(client.get("/pairs/photos/report/2026-10.csv").text)))
    facts = {(r[0], r[2]): r for r in rows}
    assert facts["protection", "backup_versioning.state_at_start"][3] == "ok"
    assert facts["protection", "backup_versioning.worst_state"][3] == "critical"
    assert facts["protection", "backup_versioning.percent_ok"][3] == str(round(72000 / 744, 4))
    assert facts["protection", "encryption.percent_ok"][4].endswith("; 32.2581% not checked")
    change = facts["protection_change", "backup_versioning: ok -> critical"]
    assert change[1] == "2026-10-05T00:00:00Z" and change[4] == "versioning is suspended"
    assert facts["protection_change", "encryption: not checked -> ok"][1] == "2026-10-11T00:00:00Z"


def test_protection_is_not_recorded_only_for_a_month_in_which_no_check_ran(
    client, viewer, photos, october_protection
):
    september = build_report(photos, datetime(2026, 9, 1).date(), NOW).protection
    assert september.recorded  # two checks ran in September
    ProtectionResult.objects.filter(checked_at__gte=october(1, 0)).delete()
    october_section = build_report(photos, october(1).date(), NOW).protection
    assert not october_section.recorded
    body = client.get("/pairs/photos/report/2026-10/").content.decode()
    assert "Protection checks: not recorded (no check ran this month)." in body


def test_report_runs_a_bounded_number_of_queries(
    client, viewer, photos, october_history, django_assert_max_num_queries
):
    for day in range(4, 29):
        run(photos, october(day), "out_of_sync" if day % 3 else "in_sync", missing=1)
        HealthChange.objects.create(
            pair=photos,
            sequence=day,
            from_state="warning" if day % 2 else "ok",
            to_state="ok" if day % 2 else "warning",
            reason="x",
            at=october(day),
        )
    for day in range(1, 29):  # four protection results a day, a change every other day
        for check_id in ("backup_versioning", "encryption"):
            check(photos, check_id, "ok" if day % 2 else "warning", october(day, 1))
            check(photos, check_id, "ok" if day % 2 else "warning", october(day, 2))
    # Session, user, pair, then the report's ten (eight, and protection's two: the month's
    # changes and the results in force at its start, whatever the number of results).
    with django_assert_max_num_queries(13):
        assert client.get("/pairs/photos/report/2026-10/").status_code == 200
    with django_assert_max_num_queries(13):
        assert client.get("/pairs/photos/report/2026-10.csv").status_code == 200


def test_report_command_writes_csv_or_html_and_refuses_a_future_month(photos, tmp_path, capsys):
    record_events(photos, *copies(october(5), 10))
    call_command("report", "photos", "--month", "2026-10")
    assert "freshness,,copies,10," in capsys.readouterr().out
    out = tmp_path / "october.html"
    call_command("report", "photos", "--month", "2026-10", "--format", "html", "--output", str(out))
    html = out.read_text()
    assert (
        html.startswith("<!doctype html>") and "<style>" in html and "photos, October 2026" in html
    )
    with pytest.raises(CommandError, match=r"^2027-01 has not begun yet"):
        call_command("report", "photos", "--month", "2027-01")
    with pytest.raises(CommandError, match="No pair named 'nope'"):
        call_command("report", "nope", "--month", "2026-10")


def test_overview_metrics_and_health_agree_on_the_30_day_figure(client, viewer, photos):
    quiet = make_pair(name="quiet")
    record_events(photos, *copies(NOW - timedelta(days=2), 1000, late=8))
    body = client.get("/").content.decode()
    assert "Freshness 30 d" in body and "99.2%" in body
    text = exposition().decode()
    assert 'backupsite_freshness_ratio{pair="photos",window="30d"} 0.992' in text
    assert 'backupsite_freshness_budget_remaining{pair="photos"} -7.0' in text
    assert f'backupsite_freshness_ratio{{pair="{quiet.name}"' not in text  # nothing measured


def test_pair_page_shows_thirteen_months_with_the_target_line(client, viewer, photos):
    record_events(photos, *copies(october(3), 50, late=1), *copies(NOW - timedelta(days=1), 20))
    body = client.get("/pairs/photos/").content.decode()
    assert 'id="freshness"' in body
    assert body.count('class="fresh-met"') + body.count('class="fresh-missed"') == 2
    assert 'class="objective"' in body
    assert "/pairs/photos/report/2026-10/" in body and "/pairs/photos/report/2026-11/" in body


def test_the_target_is_edited_in_the_admin_and_the_change_is_recorded(client, photos):
    admin = User.objects.create_superuser("admin", password="pw")
    client.force_login(admin)
    page = client.get(f"/admin/replication/bucketpair/{photos.pk}/change/").content.decode()
    assert 'name="freshness_target"' in page
    photos.freshness_target = "99.5"
    photos.save()
    change = photos.objective_changes.get()
    assert (str(change.target_before), str(change.target_after)) == ("99.900", "99.500")
    assert change.lag_objective_before == change.lag_objective_after == 900


@pytest.mark.django_db
def test_report_lists_the_months_restore_drills_with_their_outcome(photos):
    from replication.models import RestoreDrill

    def drill(when: datetime, **fields) -> RestoreDrill:
        made = RestoreDrill.objects.create(pair=photos, scratch="photos-bak/.backupsite/drills/")
        RestoreDrill.objects.filter(pk=made.pk).update(started_at=when, **fields)
        return made

    passed = drill(
        datetime(2026, 11, 3, 4, 0, tzinfo=UTC),
        status="passed",
        sampled=21,
        verified=21,
        sampled_bytes=1_200_000,
        duration_s=41.0,
    )
    failed = drill(datetime(2026, 11, 10, 4, 0, tzinfo=UTC), status="failed", error="bytes differ")
    drill(datetime(2026, 10, 27, 4, 0, tzinfo=UTC), status="passed")  # last month's

    section = build_report(photos, NOW.date().replace(day=1), NOW).drills

    assert section.recorded
    assert [row[1].split()[1] for row in section.rows] == [f"#{passed.pk}", f"#{failed.pk}"]
    assert section.rows[0][0] == "2026-11-03 04:00 UTC"
    assert section.rows[0][3] == "21 of 21 objects verified, 1,200,000 bytes in 41.0 s"
    assert section.rows[1][3] == "bytes differ"


def test_the_pair_page_and_the_report_both_say_when_the_objective_changed(client, viewer, photos):
    with time_machine.travel(october(7, 9), tick=False):
        call_command(
            "add_pair",
            "photos",
            "--source",
            "photos-src",
            "--backup",
            "photos-bak",
            "--freshness-target",
            "99.5",
            stdout=io.StringIO(),
        )
    with time_machine.travel(NOW - timedelta(days=2), tick=False):
        photos.refresh_from_db()
        photos.lag_objective_seconds = 300
        photos.save()
    page = client.get("/pairs/photos/").content.decode()
    panel = page[page.index('id="freshness"') :]
    assert 'datetime="2026-10-07T09:00:00Z"' in panel
    assert "Objective changed" in panel and "target 99.9% → 99.5%" in panel
    assert 'datetime="2026-11-18T12:00:00Z"' in panel and "15 min → 5 min" in panel
    october_report = client.get("/pairs/photos/report/2026-10/").content.decode()
    assert "The objective changed on 2026-10-07 09:00 UTC" in october_report
    assert "target 99.9% → 99.5%" in october_report
    assert "2026-11-18" not in october_report  # a later month's change is that month's
    november = list(csv.reader(io.StringIO(client.get("/pairs/photos/report/2026-11.csv").text)))
    (change,) = [r for r in november if r[0] == "objective_change"]
    assert change[1:4] == ["2026-11-18T12:00:00Z", "lag_objective_seconds", "300"]

"""The dashboard pages: content, permissions, 404s, escaping, CSV and query bounds."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from backupsite.celery import app
from replication.models import Discrepancy, ReconcileRun
from tests.factories import make_pair, record_events

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def viewer(db, client):
    user = User.objects.create_user("viewer", password="pw")
    client.force_login(user)
    return user


@pytest.fixture
def operator(db, client):
    user = User.objects.create_user("operator", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="reconcile_bucketpair"))
    client.force_login(user)
    return user


def finished_run(pair, **fields) -> ReconcileRun:
    now = timezone.now()
    values = {
        "status": "succeeded",
        "verdict": "in_sync",
        "started_at": now - timedelta(seconds=12),
        "finished_at": now,
    }
    return ReconcileRun.objects.create(pair=pair, **(values | fields))


def recent(minutes: float) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


# --- Login ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["/", "/pairs/photos/", "/runs/1/", "/runs/1/discrepancies.csv", "/runs/1/progress/"],
)
def test_every_page_asks_for_a_login(client, pair, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/pairs/nope/", "/runs/999/", "/runs/999/discrepancies.csv", "/runs/999/progress/"]
)
def test_unknown_pairs_and_runs_are_404(client, viewer, url):
    assert client.get(url).status_code == 404


# --- Overview ---------------------------------------------------------------------------------


def test_overview_without_pairs_says_how_to_add_one(client, viewer):
    body = client.get("/").content.decode()
    assert "No bucket pair yet" in body
    assert "add_pair" in body
    assert reverse("admin:replication_bucketpair_add") in body


def test_overview_lists_pairs_worst_first_with_reason_and_figures(client, viewer):
    healthy = make_pair(name="aaa-healthy")
    broken = make_pair(name="zzz-broken", grace_seconds=60)
    record_events(
        healthy,
        {"event_time": recent(2), "finished_at": recent(1)},
        # Copies in two hours: enough for the 24 h sparkline to draw a line.
        {"event_time": recent(121), "finished_at": recent(120)},
    )
    record_events(
        broken,
        {"status": "failed", "event_time": recent(60), "finished_at": recent(59)},
        {"event_time": recent(3), "finished_at": recent(1)},
    )
    finished_run(healthy)
    body = client.get("/").content.decode()
    assert body.index("zzz-broken") < body.index("aaa-healthy")
    assert "CRITICAL" in body and "OK" in body
    assert "1 object lacking, behind by 1 h: 1 failed copy since" in body
    assert "in sync" in body
    assert '<svg class="spark"' in body


def test_overview_shows_in_flight_beside_the_verdict(client, viewer, pair):
    # "in sync" alone hid 12 objects the backup did not have yet.
    finished_run(
        pair, verdict="in_sync", source_objects=1002, destination_objects=990, in_flight=12
    )
    body = client.get("/").content.decode()
    cell = body[body.index('data-label="Last reconcile"') :]
    cell = re.sub(r"<[^>]+>", "", cell[: cell.index("</td>")])
    assert re.search(r"in sync\s*· 12 in flight", cell), cell


def test_overview_total_of_objects_lacking_is_the_sum_of_its_rows(client, viewer):
    for name, failures in (("a", 2), ("b", 0), ("c", 3)):
        pair = make_pair(name=name)
        record_events(pair, *[{"status": "failed"} for _ in range(failures)], {})
    body = client.get("/").content.decode()
    rows = [int(n) for n in re.findall(r'data-label="Objects lacking">(\d+)<', body)]
    assert sorted(rows) == [0, 2, 3]
    total = re.search(r'figure[^"]*">(\d+)</span><span class="label">objects lacking', body)
    assert int(total.group(1)) == sum(rows) == 5


def test_overview_pages_its_rows_worst_first_and_counts_every_pair(client, viewer, monkeypatch):
    # A thousand rows take longer to render than the whole page may: it shows a page of the
    # worst, while its totals still count every pair.
    monkeypatch.setattr("replication.dashboard.views.PAIRS_PER_PAGE", 2)
    for name in ("a", "b", "c", "d"):
        record_events(make_pair(name=name), {"event_time": recent(6), "finished_at": recent(5)})
    failing = make_pair(name="z-failing")
    failed = {"status": "failed", "event_time": recent(90), "finished_at": recent(89)}
    record_events(failing, *[failed for _ in range(3)])

    def pair_names(body):
        return re.findall(r'class="pair-name" href="/pairs/([^/]+)/"', body)

    first = client.get("/").content.decode()
    assert pair_names(first) == ["z-failing", "a"]
    assert "Pairs 1 to 2 of 5, worst first" in first and "Page 1 of 3" in first
    assert re.search(r'figure">5</span><span class="label">pairs', first)
    lacking = r'figure[^"]*">3</span><span class="label">objects lacking'
    last = client.get("/?page=3").content.decode()
    assert pair_names(last) == ["d"]
    assert re.search(lacking, last), "the totals count the pairs of every page"
    for body in (first, last):  # the day's copies too: the page's rows and the others'
        assert re.search(r'figure">4</span><span class="label"[^>]*>copies since <time', body)
        assert re.search(r'figure[^"]*">3</span><span class="label"[^>]*>failures since', body)
    found = client.get("/?q=FAIL").content.decode()
    assert pair_names(found) == ["z-failing"] and "Pairs 1 to 1 of 1" in found
    none = client.get("/?q=nothing-like-it&page=x").content.decode()
    assert "No pair named like" in none and "No bucket pair yet" not in none


def test_overview_day_figures_name_the_hour_they_count_from(client, viewer):
    # The overview's day is its sparkline's 24 hourly buckets, this one so far included; a
    # pair page's 24 hours are 96 quarter-hours. Each label says where its count begins.
    now = datetime(2026, 12, 6, 15, 40, tzinfo=UTC)
    pair = make_pair(name="photos")
    with time_machine.travel(now, tick=False):
        for finished in (
            datetime(2026, 12, 5, 15, 55, tzinfo=UTC),
            datetime(2026, 12, 5, 16, 5, tzinfo=UTC),
        ):
            record_events(
                pair, {"event_time": finished - timedelta(seconds=1), "finished_at": finished}
            )
        overview = client.get("/").content.decode()
        page = client.get("/pairs/photos/?window=24h").content.decode()
    # The hour as a <time>, shown in the viewer's zone like every time of the page.
    since = (
        '<time datetime="2026-12-05T16:00:00Z" title="2026-12-05 16:00:00 UTC" '
        'data-style="hour">16:00 UTC</time>'
    )
    assert re.search(rf'figure">1</span><span class="label"[^>]*>copies since {since}<', overview)
    assert 'data-label="Copies since 16:00 UTC"' in overview
    assert re.search(r'figure">2</span><span class="label">copies, 24 hours<', page)
    assert "from 2026-12-05 15:45 UTC to now" in page


def test_overview_runs_a_bounded_number_of_queries(client, viewer, django_assert_max_num_queries):
    for n in range(6):
        pair = make_pair()
        record_events(
            pair,
            {"event_time": recent(5), "finished_at": recent(4)},
            {"status": "failed", "event_time": recent(50), "finished_at": recent(49)},
        )
        finished_run(pair, status="failed", verdict="", error="boom") if n % 2 else finished_run(
            pair
        )
    # Whatever the number of pairs: the session and user, the pairs' facts (their latest
    # runs' facts among them) and the rooms' findings (freshness 1, protection 2, restore
    # drills 1), the page's sparklines (closed hours' totals, then the hours not folded
    # yet; they give the rows' day totals: only pairs off the page are counted apart, none
    # here), active runs and the shown rows' latest runs in full; its freshness column is
    # what health read.
    with django_assert_max_num_queries(15):
        assert client.get("/").status_code == 200


# --- Pair page --------------------------------------------------------------------------------


def test_pair_page_shows_health_charts_failures_events_runs_and_settings(client, viewer, pair):
    record_events(
        pair,
        {
            "key": "img/bad.jpg",
            "status": "failed",
            "error_code": "AccessDenied",
            "error_message": "no s3:PutObject on photos-bak",
            "event_time": recent(30),
            "finished_at": recent(29),
        },
        {"key": "img/good.jpg", "event_time": recent(3), "finished_at": recent(2)},
    )
    run = finished_run(pair, verdict="out_of_sync", missing=3)
    body = client.get("/pairs/photos/?window=1h").content.decode()
    assert "CRITICAL" in body
    assert "img/bad.jpg" in body and "AccessDenied" in body
    assert "no s3:PutObject on photos-bak" in body
    assert "img/good.jpg" in body
    assert reverse("dashboard:run", args=[run.pk]) in body
    assert reverse("admin:replication_bucketpair_change", args=[pair.pk]) not in body
    assert 'class="chart"' in body
    assert "photos-src/" in body and "15 min" in body


def test_pair_page_searches_and_paginates_open_failures(client, viewer, pair):
    record_events(
        pair,
        *[
            {"key": f"logs/{i:03}.txt", "status": "failed", "event_time": recent(10)}
            for i in range(30)
        ],
        {"key": "special/needle.bin", "status": "failed", "event_time": recent(10)},
    )
    first = client.get("/pairs/photos/").content.decode()
    assert "Page 1 of 2" in first
    found = client.get("/pairs/photos/?q=needle").content.decode()
    assert "special/needle.bin" in found and "logs/000.txt" not in found
    assert client.get("/pairs/photos/?page=abc&window=nonsense").status_code == 200


def test_pair_page_hides_the_buttons_without_the_permission(client, viewer, pair):
    body = client.get("/pairs/photos/").content.decode()
    assert reverse("dashboard:pair-reconcile", args=["photos"]) not in body
    assert "may not start a reconcile" in body


def test_pair_page_runs_a_bounded_number_of_queries(
    client, operator, pair, django_assert_max_num_queries
):
    record_events(pair, *[{"status": "failed", "event_time": recent(i)} for i in range(40)])
    for _ in range(3):
        finished_run(pair)
    for window in ("1h", "24h", "7d", "30d"):
        # The page, its health facts (with the rooms' findings; what the backup lacks is two
        # counts, one per partial index), its series and its health timeline; the freshness
        # panel's two; the Protection panel's four (the checks, the
        # guard's open hold, its latest audit entries, its kept keys' count).
        with django_assert_max_num_queries(30):
            assert client.get(f"/pairs/photos/?window={window}").status_code == 200


# --- Reconcile button -------------------------------------------------------------------------


def test_reconcile_needs_the_permission(client, viewer, pair):
    response = client.post("/pairs/photos/reconcile/")
    assert response.status_code == 403
    assert not ReconcileRun.objects.exists()


def test_reconcile_is_post_only(client, operator, pair):
    assert client.get("/pairs/photos/reconcile/").status_code == 405


def test_reconcile_checks_csrf(operator, pair):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post("/pairs/photos/reconcile/").status_code == 403
    assert not ReconcileRun.objects.exists()


def test_asking_while_a_run_is_active_shows_that_run(client, operator, pair):
    active = ReconcileRun.objects.create(pair=pair, status="running")
    response = client.post("/pairs/photos/reconcile/", follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard:run", args=[active.pk])
    assert "already running" in response.content.decode()
    assert ReconcileRun.objects.count() == 1


def test_repair_asked_while_a_plain_run_is_active_says_the_repair_was_not_started(
    client, operator, pair
):
    active = ReconcileRun.objects.create(pair=pair, status="running")
    response = client.post("/pairs/photos/reconcile/", {"repair": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard:run", args=[active.pk])
    assert "The repair was not started" in response.content.decode()
    assert ReconcileRun.objects.get().repair is False


def test_pair_page_links_to_the_active_run_instead_of_the_buttons(client, operator, pair):
    active = ReconcileRun.objects.create(pair=pair, status="queued")
    body = client.get("/pairs/photos/").content.decode()
    assert reverse("dashboard:pair-reconcile", args=["photos"]) not in body
    assert reverse("dashboard:run", args=[active.pk]) in body


@pytest.fixture
def dead_broker():
    """Tasks really go to a broker, and that broker is a port nobody listens on."""
    old = {key: app.conf[key] for key in ("task_always_eager", "broker_url", "task_publish_retry")}
    # Fresh connection and producer pools for the dead URL; the suite's own come back after.
    pools = (app._pool, app.amqp._producer_pool)
    app._pool = app.amqp._producer_pool = None
    app.conf.update(
        task_always_eager=False, broker_url="redis://127.0.0.1:9/0", task_publish_retry=False
    )
    yield
    if app._pool is not None:
        app._pool.force_close_all()
    app.conf.update(old)
    app._pool, app.amqp._producer_pool = pools


def test_reconcile_with_the_broker_down_says_the_queue_is_unavailable(
    client, operator, pair, dead_broker
):
    response = client.post("/pairs/photos/reconcile/", follow=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert "The queue is unavailable" in body
    run = ReconcileRun.objects.get()
    assert run.status == ReconcileRun.Status.FAILED
    assert run.error.startswith("the task queue is unavailable, so the run was not queued")


def test_reconcile_without_a_broker_runs_in_process_and_says_what_it_found(client, operator, pair):
    # No REDIS_URL: the run happens inside the request; a failure is the run's, not the queue's.
    response = client.post("/pairs/photos/reconcile/", follow=True)
    body = response.content.decode()
    run = ReconcileRun.objects.get()
    assert run.status == ReconcileRun.Status.FAILED  # no S3 in this test
    assert f"Run #{run.pk} of photos failed: " in body
    assert "The queue is unavailable" not in body


def test_a_run_that_ran_without_a_broker_lands_on_its_outcome_and_duration(
    client, operator, pair, s3
):
    """No worker: the run has ended before its page loads; the page says what it found and
    how long it took, instead of a progress bar that never moves."""
    s3.put_object(Bucket="photos-src", Key="a.txt", Body=b"x")
    s3.put_object(Bucket="photos-bak", Key="a.txt", Body=b"x")
    response = client.post("/pairs/photos/reconcile/", follow=True)
    body = response.content.decode()
    run = ReconcileRun.objects.get()
    assert run.status == ReconcileRun.Status.SUCCEEDED
    assert response.redirect_chain[-1][0] == reverse("dashboard:run", args=[run.pk])
    assert f"Run #{run.pk} of photos finished: " in body
    assert ". It ran here, without a worker, in " in body
    assert " · took " in body
    assert "<progress" not in body


def test_pair_page_says_when_no_evaluator_has_recorded_its_health(client, viewer, pair):
    # It said "every pair is evaluated each minute" whether or not anything evaluated it.
    fresh = client.get("/pairs/photos/").content.decode()
    assert "within a minute" in fresh and "is not running" not in fresh
    type(pair).objects.filter(pk=pair.pk).update(created_at=timezone.now() - timedelta(hours=1))
    stale = client.get("/pairs/photos/").content.decode()
    assert "evaluated each minute" not in stale
    assert "is not running, so no alert is sent" in stale


# --- Run page ---------------------------------------------------------------------------------


def test_run_page_shows_verdict_counts_and_filters_discrepancies(client, viewer, pair):
    run = finished_run(pair, verdict="out_of_sync", missing=2, extra=1, repair=True, repaired=1)
    Discrepancy.objects.create(run=run, key="a/missing-1", kind="missing", repair_outcome="copied")
    Discrepancy.objects.create(run=run, key="a/missing-2", kind="missing")
    Discrepancy.objects.create(run=run, key="b/extra", kind="extra")
    body = client.get(f"/runs/{run.pk}/").content.decode()
    assert "out of sync" in body
    assert "a/missing-1" in body and "b/extra" in body
    assert "copied" in body
    missing_only = client.get(f"/runs/{run.pk}/?kind=missing").content.decode()
    assert "a/missing-2" in missing_only and "b/extra" not in missing_only
    searched = client.get(f"/runs/{run.pk}/?q=missing-2").content.decode()
    assert "a/missing-2" in searched and "a/missing-1" not in searched
    assert client.get(f"/runs/{run.pk}/?kind=bogus&page=-1").status_code == 200


def test_active_run_page_polls_its_progress(client, viewer, pair):
    finished_run(pair, source_objects=600, destination_objects=400)
    run = ReconcileRun.objects.create(
        pair=pair, status="running", objects_scanned=250, ranges_total=1
    )
    body = client.get(f"/runs/{run.pk}/").content.decode()
    assert f'hx-get="/runs/{run.pk}/progress/?watching=1"' in body
    assert "250" in body and 'value="25"' in body
    partial = client.get(f"/runs/{run.pk}/progress/?watching=1")
    assert "HX-Refresh" not in partial
    assert "<html" not in partial.content.decode()


def test_progress_of_a_finished_run_reloads_the_watching_page(client, viewer, pair):
    run = finished_run(pair)
    response = client.get(f"/runs/{run.pk}/progress/?watching=1")
    assert response["HX-Refresh"] == "true"


def test_run_page_runs_a_bounded_number_of_queries(
    client, viewer, pair, django_assert_max_num_queries
):
    run = finished_run(pair, missing=200)
    Discrepancy.objects.bulk_create(
        Discrepancy(run=run, key=f"k{i}", kind="missing") for i in range(200)
    )
    with django_assert_max_num_queries(8):
        assert client.get(f"/runs/{run.pk}/").status_code == 200


# --- Escaping ---------------------------------------------------------------------------------


def test_keys_errors_and_reasons_are_escaped_everywhere(client, operator):
    pair = make_pair(name="xss", grace_seconds=60)
    record_events(
        pair,
        {
            "key": XSS,
            "status": "failed",
            "error_code": XSS,
            "error_message": XSS,
            "event_time": recent(30),
        },
    )
    run = finished_run(pair, status="failed", verdict="", error=XSS)
    Discrepancy.objects.create(run=run, key=XSS, kind="missing", repair_error=XSS)
    for url in ("/", "/pairs/xss/", f"/runs/{run.pk}/", f"/runs/{run.pk}/progress/"):
        body = client.get(url).content.decode()
        assert XSS not in body, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in body, url


# --- CSV --------------------------------------------------------------------------------------


def test_csv_streams_every_discrepancy_with_formulas_neutralised(client, viewer, pair):
    run = finished_run(pair, missing=3)
    for key in ('=HYPERLINK("http://x")', "+1", "@SUM(A1)", "-2", "plain/key.txt"):
        Discrepancy.objects.create(run=run, key=key, kind="missing", repair_error="=cmd|' /C'")
    response = client.get(f"/runs/{run.pk}/discrepancies.csv")
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        f'attachment; filename="photos-run-{run.pk}-discrepancies.csv"'
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][0] == "key"
    keys = [row[0] for row in rows[1:]]
    assert keys == ['\'=HYPERLINK("http://x")', "'+1", "'@SUM(A1)", "'-2", "plain/key.txt"]
    assert all(row[-1] == "'=cmd|' /C'" for row in rows[1:])


# --- The site's icon --------------------------------------------------------------------------


def test_favicon_ico_is_answered_without_a_login(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("/dashboard/favicon.ico")
    icon = Path(__file__).resolve().parent.parent / "static" / "dashboard" / "favicon.ico"
    assert icon.read_bytes()[:4] == b"\x00\x00\x01\x00"  # an ICO file's header


def test_the_login_page_is_branded(client, db):
    body = client.get("/admin/login/").content.decode()
    assert "Django administration" not in body
    assert "backupsite" in body
    assert "favicon" in body


def test_the_admin_writes_times_in_utc_for_the_page_to_localise(client, db):
    from replication.models import IngestKey

    User.objects.create_superuser("admin", password="pw")
    client.login(username="admin", password="pw")
    key = IngestKey.objects.create(name="lambda")
    body = client.get("/admin/replication/ingestkey/").content.decode()
    assert f"{key.created_at:%Y-%m-%d %H:%M} UTC" in body
    assert "dashboard/localtime.js" in body


def test_a_young_pair_says_not_enough_data_yet_instead_of_drawing_a_dot(client, viewer, pair):
    record_events(pair, *({"event_time": recent(2), "finished_at": recent(1)} for _ in range(3)))
    overview = client.get("/").content.decode()
    assert "not enough data yet" in overview
    assert 'class="spark"' not in overview
    week = client.get("/pairs/photos/?window=7d").content.decode()
    assert week.count("Not enough data yet") == 2  # the lag and the throughput charts
    # The only chart drawn is the freshness panel's: this month's copies are real data.
    assert week.count("chart-plot") == week.count("share of copies within the lag objective")

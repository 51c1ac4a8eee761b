"""The dashboard pages: content, permissions, 404s, escaping, CSV and query bounds."""

import csv
import io
from datetime import timedelta

import pytest
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
    record_events(healthy, {"event_time": recent(2), "finished_at": recent(1)})
    record_events(
        broken,
        {"status": "failed", "event_time": recent(60), "finished_at": recent(59)},
        {"event_time": recent(3), "finished_at": recent(1)},
    )
    finished_run(healthy)
    body = client.get("/").content.decode()
    assert body.index("zzz-broken") < body.index("aaa-healthy")
    assert "CRITICAL" in body and "OK" in body
    assert "1 copy failing" in body
    assert "in sync" in body
    assert '<svg class="spark"' in body


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
        # The page, its health facts, its series and its health timeline; and the Protection
        # panel's three (the checks, the guard's open hold, its latest audit entries).
        with django_assert_max_num_queries(23):
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
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][0] == "key"
    keys = [row[0] for row in rows[1:]]
    assert keys == ['\'=HYPERLINK("http://x")', "'+1", "'@SUM(A1)", "'-2", "plain/key.txt"]
    assert all(row[-1] == "'=cmd|' /C'" for row in rows[1:])

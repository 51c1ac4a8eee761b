"""The dashboard in a real browser (Debian's Chromium driven by Playwright).

Log in, watch a pair go from OK to CRITICAL after a failing copy, press "Reconcile now" and
follow the run's progress bar to its verdict without reloading. Screenshots of each page go
to docs/screenshots/ for the README.

The broker is the one thing replaced: the button's task is recorded instead of sent, and
the test then plays the worker, so the page is seen while the run is queued and running.
"""

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from replication import tasks
from replication.models import ReconcileRun
from tests.factories import record_events

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def page():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium` to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    # Playwright's sync API runs an event loop; Django must not refuse ORM calls for it.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 900}, timezone_id="Europe/Paris"
        )
        yield context.new_page()
        browser.close()


def ago(minutes: float) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


def test_operator_sees_a_failure_and_follows_a_reconcile_to_its_verdict(
    page, live_server, transactional_db, s3, monkeypatch
):
    from tests.factories import make_pair

    pair = make_pair(
        name="photos", source_bucket="photos-src", backup_bucket="photos-bak", grace_seconds=60
    )
    make_pair(name="invoices", source_bucket="invoices-src", backup_bucket="invoices-bak")
    for n in range(5):
        s3.put_object(Bucket="photos-src", Key=f"img/{n}.jpg", Body=b"x")
        s3.put_object(Bucket="photos-bak", Key=f"img/{n}.jpg", Body=b"x")
    record_events(
        pair,
        *[
            # a day of copies, a few seconds to a few minutes late
            {
                "event_time": ago(n * 36 + 2),
                "started_at": ago(n * 36 + 2),
                "finished_at": ago(n * 36 + 2 - 0.05 * (n % 7) ** 2),
            }
            for n in range(40)
        ],
    )
    User.objects.create_superuser("ops", password="correct horse")

    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    row = page.locator("tr", has=page.locator("a.pair-name", has_text="photos"))
    assert row.locator(".badge").inner_text() == "OK"

    record_events(
        pair,
        {
            "key": "img/lost.jpg",
            "status": "failed",
            "error_code": "AccessDenied",
            "error_message": "Access Denied",
            "event_time": ago(20),
            "started_at": ago(20),
            "finished_at": ago(19),
        },
    )
    page.reload()
    assert row.locator(".badge").inner_text() == "CRITICAL"
    assert "1 copy failing" in row.inner_text()
    page.screenshot(path=SCREENSHOTS / "overview.png")

    sent = []
    monkeypatch.setattr(
        tasks.reconcile_pair,
        "apply_async",
        lambda args, kwargs: sent.append((args, kwargs)) or type("R", (), {"id": "t-1"})(),
    )
    row.locator("a.pair-name").click()
    assert "img/lost.jpg" in page.locator("#failures").inner_text()
    page.screenshot(path=SCREENSHOTS / "pair.png", full_page=True)
    page.get_by_role("button", name="Reconcile now").click()

    page.wait_for_selector("progress.progress")
    run = ReconcileRun.objects.get()
    assert run.status == ReconcileRun.Status.QUEUED
    assert "queued" in page.locator("#run-summary h1").inner_text()

    # The worker: the run the button queued, as Celery would run it.
    ((args, kwargs),) = sent

    def work():
        try:
            tasks.reconcile_pair(*args, **kwargs)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=60)
    page.wait_for_selector(".verdict-in_sync", timeout=15_000)
    assert "in sync" in page.locator("#run-summary h1").inner_text()
    assert page.locator("progress").count() == 0
    # Times are shown in the viewer's zone (Paris here), UTC on hover.
    stamp = page.locator("#run-summary time").first
    assert stamp.get_attribute("title").endswith(" UTC")
    assert "UTC" not in stamp.inner_text()
    page.screenshot(path=SCREENSHOTS / "run.png", full_page=True)

"""A restore's page in a real browser, at 1,400 and 390 px: a person cancels a running restore
and reads who cancelled it and how far it had got; nothing spills sideways on a phone.
Screenshots go to SCREENSHOTS_DIR (restore-running*.png, restore-cancelled*.png)."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from replication.models import RestoredObject, RestoreJob
from tests.factories import make_pair
from tests.test_dashboard_browser import assert_fits, browser, page, phone, shots  # noqa: F401

pytestmark = pytest.mark.slow

NAME = "customer-invoices-archive-eu-west-1-long-term-retention"
KEY = "exports/invoices/by-customer/2026/customer-00042/" + "invoice-2026-11-final-" * 3 + ".pdf"


@pytest.fixture
def running(transactional_db) -> RestoreJob:
    """A restore of 5,000 objects that has restored 1,234, and a person who may cancel it."""
    pair = make_pair(
        name=NAME,
        source_bucket="acme-customer-invoices-production-eu-west-1",
        source_prefix="exports/invoices/by-customer/2026/",
        backup_bucket="acme-customer-invoices-backup-eu-central-1",
        backup_prefix="replicas/invoices/by-customer/2026/",
    )
    now = timezone.now()
    job = RestoreJob.objects.create(
        pair=pair,
        requested_by_name="ops",
        at=now - timedelta(hours=3),
        prefix=pair.source_prefix,
        target_bucket="acme-customer-invoices-restored-eu-west-1",
        target_prefix="restores/2026-11-27-before-the-bad-export/",
        status=RestoreJob.Status.RUNNING,
        attempt=1,
        started_at=now - timedelta(minutes=4),
        heartbeat_at=now,
        planned_objects=5000,
        planned_bytes=5000 * 180_000,
        restored=1234,
        bytes_restored=1234 * 180_000,
    )
    RestoredObject.objects.bulk_create(
        RestoredObject(
            job=job,
            key=KEY.replace("00042", f"{n:05d}"),
            version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
            size=180_000,
            etag="d41d8cd98f00b204e9800998ecf8427e",
            target_key="restores/" + KEY,
            outcome=RestoredObject.Outcome.RESTORED,
            verified_by="etag",
            finished_at=now,
        )
        for n in range(3)
    )
    user = User.objects.create_user("ops", password="correct horse", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="restore_bucketpair"))
    return job


def cancel(tab, url: str, job: RestoreJob, shot: Path) -> str:
    """Log in, look at the running restore (a screenshot beside ``shot``), cancel it; the
    summary it then shows (``shot`` taken of the whole page)."""
    tab.goto(f"{url}/restores/{job.pk}/")  # the login page, then back here
    tab.fill("#id_username", "ops")
    tab.fill("#id_password", "correct horse")
    tab.click("input[type=submit]")
    summary = tab.locator("#restore-summary")
    assert "1\u2009234 of 5\u2009000 objects done" in summary.inner_text()  # thin spaces
    tab.screenshot(path=shot.with_name(shot.name.replace("cancelled", "running")), full_page=True)
    tab.get_by_role("button", name="Cancel").click()
    tab.wait_for_url(f"**/restores/{job.pk}/")
    assert f"Restore #{job.pk} cancelled" in tab.locator("main").inner_text()
    tab.screenshot(path=shot, full_page=True)
    return summary.inner_text()


def test_cancelling_a_restore_on_a_desktop(page, live_server, running, shots):  # noqa: F811
    text = cancel(page, live_server.url, running, shots / "restore-cancelled.png")

    assert re.search("Cancelled by ops at .+: 1\u2009234 of 5\u2009000 restored\\.", text), text
    assert page.get_by_role("button", name="Cancel").count() == 0


def test_cancelling_a_restore_fits_a_phone(phone, live_server, running, shots):  # noqa: F811
    text = cancel(phone, live_server.url, running, shots / "restore-cancelled-390.png")

    assert "1\u2009234 of 5\u2009000 restored" in text
    assert_fits(phone, "cancelled restore")

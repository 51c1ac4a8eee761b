"""The pair page's restore panel in a real browser, at 1,400 and 390 px: a person presses
"Run drill now" and reads the result, then follows the offer of a restore point through the
plan and the confirmation to a finished restore; nothing spills sideways on a phone.
Screenshots (restore.png, restore-390.png) go to SCREENSHOTS_DIR or a temporary directory."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from replication import s3
from replication.models import ReconcileRun, RestoreJob, RestorePoint
from tests.factories import make_pair
from tests.test_dashboard_browser import assert_fits, browser, page, phone, shots  # noqa: F401

pytestmark = pytest.mark.slow

SOURCE = "acme-customer-photos-production-eu-west-1"
BACKUP = "acme-customer-photos-backup-eu-central-1"
NAME = "customer-photos-archive-eu-west-1-long-term-retention"
PREFIX = "originals/raw/2026/11/a-camera-with-a-rather-long-folder-name/"


@pytest.fixture
def restorable(transactional_db, local_s3):
    """A pair whose versioned backup holds photos overwritten with garbage after a moment
    flagged as a restore point; a person who may restore it."""
    client = s3.client()
    for bucket in (SOURCE, BACKUP):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=BACKUP, VersioningConfiguration={"Status": "Enabled"})
    keys = [f"{PREFIX}IMG_{n:04d}.cr3" for n in range(4)]
    for key in keys:
        client.put_object(Bucket=SOURCE, Key=key, Body=f"photo {key}".encode())
        client.put_object(Bucket=BACKUP, Key=key, Body=f"photo {key}".encode())
    pair = make_pair(name=NAME, source_bucket=SOURCE, backup_bucket=BACKUP)
    ReconcileRun.objects.create(
        pair=pair,
        status="succeeded",
        verdict="in_sync",
        destination_bytes=48_000_000,
        finished_at=timezone.now(),
    )
    # Versions are stamped to the second: the garbage comes a second after the moment.
    moment = timezone.now().replace(microsecond=0) + timedelta(seconds=1)
    RestorePoint.objects.create(
        pair=pair,
        at=moment,
        prefix=PREFIX,
        reason=f"4 objects under {PREFIX} were overwritten with garbage",
    )
    return client, keys, moment


@pytest.fixture
def restorer(transactional_db):
    user = User.objects.create_user("ops", password="correct horse", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="restore_bucketpair"))
    return user


def log_in(tab, url: str) -> None:
    tab.goto(f"{url}/pairs/{NAME}/")  # the login page, then back here
    tab.fill("#id_username", "ops")
    tab.fill("#id_password", "correct horse")
    tab.click("input[type=submit]")
    tab.wait_for_selector("#restore .card-head form")  # the panel, loaded on its own


def drill_and_read(tab, live_server) -> None:
    log_in(tab, live_server.url)
    tab.get_by_role("button", name="Run drill now").click()
    tab.wait_for_url(f"**/pairs/{NAME}/#restore")
    tab.wait_for_selector("#restore .drill-verified")
    assert (
        "passed: 4 of 4 objects restored, read back and verified"
        in tab.locator(".messages").inner_text()
    )
    text = tab.locator("#restore").inner_text()
    assert "Last verified restorable" in text and "4 of 4 objects" in text
    assert "Estimated full restore: about" in text and "48.0 MB" in text
    assert "Something to restore:" in text


def restore_from_the_offer(tab, client, keys, moment, shot=None) -> None:
    with_garbage(client, keys, moment)
    tab.get_by_role("link", name="Restore originals/raw/").click()
    assert tab.input_value("#at") == moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert tab.input_value("#prefix") == PREFIX
    assert_fits(tab, "restore form, prefilled")
    if shot:
        tab.screenshot(path=shot, full_page=True)
    tab.get_by_role("button", name="Show the plan").click()
    assert "4 objects" in tab.locator("#plan").inner_text()
    assert_fits(tab, "restore plan")
    tab.get_by_role("button", name="Restore 4 objects").click()
    tab.wait_for_url("**/restores/*/")
    job = RestoreJob.objects.get()
    assert (job.status, job.restored) == ("succeeded", 4)
    for key in keys:
        restored = client.get_object(Bucket=BACKUP, Key=f".backupsite/restores/{key}")
        assert restored["Body"].read() == f"photo {key}".encode()


def with_garbage(client, keys, moment) -> None:
    """The overwrite gone wrong, written after the restore point's second."""
    time.sleep(max(0, (moment + timedelta(seconds=1) - timezone.now()).total_seconds()))
    for key in keys:
        client.put_object(Bucket=SOURCE, Key=key, Body=b"\x8f garbage")
        client.put_object(Bucket=BACKUP, Key=key, Body=b"\x8f garbage")


def test_drilling_and_restoring_on_a_desktop(page, live_server, restorable, restorer, shots):  # noqa: F811
    drill_and_read(page, live_server)
    panel = page.locator("#restore")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=shots / "restore.png")
    restore_from_the_offer(page, *restorable)


def test_drilling_and_restoring_fit_a_phone(phone, live_server, restorable, restorer, shots):  # noqa: F811
    drill_and_read(phone, live_server)
    assert_fits(phone, "pair with a restore point and a drill")
    buttons = (
        phone.get_by_role("button", name="Run drill now"),
        phone.get_by_role("link", name="Restore…", exact=True),
    )
    assert all(button.bounding_box()["height"] >= 40 for button in buttons)
    phone.locator("#restore").screenshot(path=shots / "restore-390.png")
    restore_from_the_offer(phone, *restorable, shot=shots / "restore-form-390.png")
    assert_fits(phone, "restore job")

"""The Protection panel in a real browser, at 1,400 and 390 px: a person presses "Check
protection now", reads each check with its fix, opens the policy's difference; nothing
spills sideways on a phone. Screenshots go to docs/screenshots/protection*.png."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from moto import mock_aws

from replication import s3
from tests.factories import make_pair, record_events
from tests.test_dashboard_browser import assert_fits, browser, page, phone, shots  # noqa: F401

pytestmark = pytest.mark.slow

SOURCE = "acme-customer-invoices-production-eu-west-1"
BACKUP = "acme-customer-invoices-backup-eu-central-1"
NAME = "customer-invoices-archive-eu-west-1-long-term-retention"


@pytest.fixture
def unprotected(transactional_db):
    """A long-named pair whose backup is bare but for a short lifecycle rule and a policy."""
    with mock_aws():
        client = s3.client()
        client.create_bucket(Bucket=SOURCE)
        client.create_bucket(Bucket=BACKUP)
        client.put_bucket_lifecycle_configuration(
            Bucket=BACKUP,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "tidy-old-versions",
                        "Status": "Enabled",
                        "Filter": {"Prefix": ""},
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                    }
                ]
            },
        )
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadForTheAnalyticsAccountWithAVeryLongStatementIdentifier",
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::210987654321:role/analytics-readers"},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{BACKUP}/replicas/invoices/by-customer/2026/*",
                }
            ],
        }
        client.put_bucket_policy(Bucket=BACKUP, Policy=json.dumps(policy))
        make_pair(
            name=NAME,
            source_bucket=SOURCE,
            source_prefix="exports/invoices/by-customer/2026/",
            backup_bucket=BACKUP,
            backup_prefix="replicas/invoices/by-customer/2026/",
        )
        user = User.objects.create_user("ops", password="correct horse", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="run_protection_checks"))
        yield


def log_in(tab, url: str) -> None:
    tab.goto(f"{url}/pairs/{NAME}/")  # the login page, then back here
    tab.fill("#id_username", "ops")
    tab.fill("#id_password", "correct horse")
    tab.click("input[type=submit]")


def check_now_and_read(tab, live_server) -> None:
    log_in(tab, live_server.url)
    panel = tab.locator("#protection")
    assert "Not checked yet" in panel.inner_text()
    tab.get_by_role("button", name="Check protection now").click()
    tab.wait_for_url(f"**/pairs/{NAME}/#protection")
    assert f"Protection of {NAME} checked." in tab.locator("main").inner_text()
    text = panel.inner_text()
    assert panel.locator("h2 .badge").inner_text() == "CRITICAL"
    assert panel.locator("li.check").count() == 7
    assert "deletes noncurrent versions after 7 days, less than the 30-day" in text
    assert f"aws s3api put-public-access-block --bucket {BACKUP}" in text
    assert "a bucket policy is in place that nobody has acknowledged yet" in text
    panel.get_by_text("The difference").click()
    assert "analytics-readers" in panel.locator("pre.diff").inner_text()


def test_the_protection_panel_on_a_desktop(page, live_server, unprotected, shots):  # noqa: F811
    check_now_and_read(page, live_server)
    panel = page.locator("#protection")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=shots / "protection.png")
    # Each check on one row: the state's badge beside its text, not above it.
    first = panel.locator("li.check").first
    badge, body = (
        first.locator(".badge").bounding_box(),
        first.locator(".check-body").bounding_box(),
    )
    assert badge["x"] + badge["width"] <= body["x"] and abs(badge["y"] - body["y"]) < 8


def test_the_protection_panel_fits_a_phone(phone, live_server, unprotected, shots):  # noqa: F811
    check_now_and_read(phone, live_server)
    assert_fits(phone, "pair with protection")
    panel = phone.locator("#protection")
    button = phone.get_by_role("button", name="Check protection now").bounding_box()
    assert button["height"] >= 40
    panel.screenshot(path=shots / "protection-390.png")


@pytest.fixture
def held(transactional_db):
    """A pair whose guard tripped on a mass delete; a person who may release it."""
    from replication.protection.tasks import evaluate_guards
    from tests.test_guard import deletes

    pair = make_pair(
        name=NAME,
        source_bucket=SOURCE,
        source_prefix="exports/invoices/by-customer/2026/",
        backup_bucket=BACKUP,
        backup_prefix="replicas/invoices/by-customer/2026/",
        mirror_deletes=True,
        guard_usual=10,
    )
    deletes(pair, 600)
    assert evaluate_guards() == 1
    now = timezone.now() + timedelta(seconds=1)
    record_events(
        pair,
        *(
            {
                "key": f"{pair.source_prefix}customer-{n:05d}/invoice-2026-11-{n:05d}-final.pdf",
                "status": "held",
                "event_name": "ObjectRemoved:Delete" if n % 2 else "ObjectCreated:Put",
                "etag": "" if n % 2 else "9b2cf535f27731c974343645a3985328-12",
                "event_time": now,
                "started_at": now,
                "finished_at": now,
            }
            for n in range(3)
        ),
    )
    user = User.objects.create_user("ops", password="correct horse", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="release_guard"))


def release_and_read(tab, live_server) -> None:
    log_in(tab, live_server.url)
    section = tab.locator("#guard")
    assert "HOLDING" in section.inner_text()
    assert "600 deletes and overwrites in 5 min, usually at most 10" in section.inner_text()
    assert "Held changes (3)" in section.inner_text()
    tab.get_by_role("button", name="Keep the backup as it is").click()
    tab.wait_for_url(f"**/pairs/{NAME}/#guard")
    assert "the backup is kept as it is" in tab.locator(".messages").inner_text()
    text = section.inner_text()
    assert "WATCHING" in text
    assert "released: keep the backup as it is by ops" in text and "tripped" in text
    tab.fill("input[name=hours]", "6")
    tab.get_by_role("button", name="Pause the guard").click()
    tab.wait_for_url(f"**/pairs/{NAME}/#guard")
    assert "PAUSED" in section.inner_text()


def test_releasing_the_guard_on_a_desktop(page, live_server, held, shots):  # noqa: F811
    release_and_read(page, live_server)
    section = page.locator("#guard")
    section.scroll_into_view_if_needed()
    section.screenshot(path=shots / "guard.png")


def test_releasing_the_guard_fits_a_phone(phone, live_server, held, shots):  # noqa: F811
    log_in(phone, live_server.url)
    assert_fits(phone, "pair held")
    for name in ("Apply held changes", "Keep the backup as it is"):
        assert phone.get_by_role("button", name=name).bounding_box()["height"] >= 40
    phone.locator("#guard").screenshot(path=shots / "guard-held-390.png")
    phone.goto(f"{live_server.url}/pairs/{NAME}/")
    phone.get_by_role("button", name="Keep the backup as it is").click()
    phone.wait_for_url(f"**/pairs/{NAME}/#guard")
    assert_fits(phone, "pair released")
    phone.locator("#guard").screenshot(path=shots / "guard-390.png")

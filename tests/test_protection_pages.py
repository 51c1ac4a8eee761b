"""Protection on the pair page, in the admin and in /metrics (the checks read moto and
LocalStack: tests/s3_backends.py)."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from replication import s3
from replication.models import GuardAudit, GuardHold, PolicyAcknowledgement, ProtectionResult
from replication.protection import store
from tests.test_protection_checks import POLICY, bare, protect

pytestmark = pytest.mark.s3_backends

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def aws(s3_server):
    return s3.client()


def login(client, *codenames) -> User:
    user = User.objects.create_user("someone", password="pw")
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return user


def test_pair_page_says_protection_was_not_checked_yet(client, pair):
    login(client)
    page = client.get(reverse("dashboard:pair", args=["photos"])).content.decode()
    assert 'id="protection"' in page
    assert "Not checked yet" in page
    assert "Check protection now" not in page


def test_pair_page_shows_each_check_its_state_reason_and_fix(client, aws, pair):
    bare(aws, "photos-src", "photos-bak")
    store.run_checks(pair)
    login(client)
    page = client.get(reverse("dashboard:pair", args=["photos"])).content.decode()
    panel = page[page.index('id="protection"') :]
    assert '<span class="badge state-critical">CRITICAL</span></h2>' in panel
    assert "Backup versioning</strong>" in panel
    assert "versioning is off: an overwrite in the source replaces the backup" in panel
    assert (
        "<code>aws s3api put-bucket-versioning --bucket photos-bak "
        "--versioning-configuration Status=Enabled</code>" in panel
    )
    assert len(re.findall(r'<li class="check check-', panel)) == 7


def test_pair_page_shows_a_policy_difference_escaped(client, aws, pair):
    protect(aws, "photos-src", "photos-bak")
    aws.put_bucket_policy(
        Bucket="photos-bak",
        Policy=json.dumps(POLICY | {"Id": XSS}),
    )
    store.run_checks(pair)
    login(client)
    page = client.get(reverse("dashboard:pair", args=["photos"])).content.decode()
    assert "<summary>The difference</summary>" in page
    assert XSS not in page
    assert "&lt;img src=x" in page


def test_the_button_runs_the_checks_for_a_person_allowed_to(client, aws, pair):
    protect(aws, "photos-src", "photos-bak")
    login(client, "run_protection_checks")
    page = client.get(reverse("dashboard:pair", args=["photos"])).content.decode()
    assert "Check protection now" in page
    response = client.post(reverse("dashboard:pair-protection", args=["photos"]), follow=True)
    assert (
        response.redirect_chain[-1][0] == reverse("dashboard:pair", args=["photos"]) + "#protection"
    )
    assert "Protection of photos checked." in response.content.decode()
    assert ProtectionResult.objects.filter(pair=pair, is_latest=True).count() == 7


def test_the_button_is_refused_without_the_permission(client, pair):
    login(client)
    response = client.post(reverse("dashboard:pair-protection", args=["photos"]))
    assert response.status_code == 403
    assert not ProtectionResult.objects.exists()


def test_the_button_answers_get_with_405_and_an_unknown_pair_with_404(client, db):
    login(client, "run_protection_checks")
    assert client.get(reverse("dashboard:pair-protection", args=["nope"])).status_code == 405
    assert client.post(reverse("dashboard:pair-protection", args=["nope"])).status_code == 404


def test_the_button_says_so_when_the_queue_is_gone(client, pair, monkeypatch):
    from replication.protection import tasks

    def refuse(*args, **kwargs):
        raise ConnectionError("Redis is gone")

    monkeypatch.setattr(tasks.check_protection, "apply_async", refuse)
    login(client, "run_protection_checks")
    response = client.post(reverse("dashboard:pair-protection", args=["photos"]), follow=True)
    assert "The queue is unavailable" in response.content.decode()
    assert not ProtectionResult.objects.exists()


def test_the_panel_costs_the_same_queries_checked_or_not(client, aws, pair):
    protect(aws, "photos-src", "photos-bak")
    login(client)
    url = reverse("dashboard:pair", args=["photos"])
    client.get(url)
    with CaptureQueriesContext(connection) as before:
        client.get(url)
    store.run_checks(pair)
    with CaptureQueriesContext(connection) as after:
        client.get(url)
    assert len(after) == len(before)


# --- admin


def test_admin_checks_protection_and_reports_what_is_not_ok(admin_client, aws, pair):
    bare(aws, "photos-src", "photos-bak")
    response = admin_client.post(
        reverse("admin:replication_bucketpair_changelist"),
        {"action": "check_protection", "_selected_action": [pair.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "Pair photos: backup_public_access critical" in text
    assert ProtectionResult.objects.filter(pair=pair).count() == 7


def test_admin_acknowledges_the_policy_last_read(admin_client, admin_user, aws, pair):
    protect(aws, "photos-src", "photos-bak")
    aws.put_bucket_policy(Bucket="photos-bak", Policy=json.dumps(POLICY))
    store.run_checks(pair)
    response = admin_client.post(
        reverse("admin:replication_bucketpair_changelist"),
        {"action": "acknowledge_backup_policy", "_selected_action": [pair.pk]},
        follow=True,
    )
    assert "the backup bucket policy last read is acknowledged" in response.content.decode()
    ack = PolicyAcknowledgement.objects.get(pair=pair)
    assert ack.acknowledged_by == admin_user and '"DenyInsecure"' in ack.policy
    latest = ProtectionResult.objects.get(pair=pair, check_id="backup_policy", is_latest=True)
    assert latest.state == "ok"


def test_admin_actions_need_their_permissions(client, pair):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    for codename in ("view_bucketpair", "change_bucketpair"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    page = client.get(reverse("admin:replication_bucketpair_changelist")).content.decode()
    assert "check_protection" not in page
    assert "acknowledge_backup_policy" not in page
    user.user_permissions.add(Permission.objects.get(codename="acknowledge_bucket_policy"))
    page = client.get(reverse("admin:replication_bucketpair_changelist")).content.decode()
    assert "acknowledge_backup_policy" in page


def test_admin_pair_page_shows_both_least_privilege_policies_and_the_window(admin_client, pair):
    page = admin_client.get(reverse("admin:replication_bucketpair_change", args=[pair.pk]))
    text = page.content.decode()
    assert "IAM policy for the function&#x27;s role" in text
    assert "SeeBackupWhileHeld" in text
    assert "IAM policy for the site&#x27;s workers" in text
    assert "CheckBackupProtection" in text
    assert 'name="protection_window_days" value="30"' in text


# --- /metrics


def test_metrics_has_each_checks_latest_state(client, aws, pair):
    bare(aws, "photos-src", "photos-bak")
    store.run_checks(pair)
    text = client.get("/metrics").content.decode()
    series = "backupsite_protection_check"
    assert f'{series}{{check="backup_public_access",pair="photos",state="critical"}} 1.0' in text
    assert f'{series}{{check="backup_public_access",pair="photos",state="ok"}} 0.0' in text
    assert f'{series}{{check="encryption",pair="photos",state="ok"}} 1.0' in text


# --- the guard on the pair page


def trip(pair, n: int = 6) -> None:
    from replication.protection.tasks import evaluate_guards
    from tests.test_guard import deletes

    pair.guard_min_changes = n - 1
    pair.save()
    deletes(pair, n)
    assert evaluate_guards() == 1


def test_a_holding_guard_shows_its_reason_and_the_two_releases(client, pair):
    trip(pair)
    login(client, "release_guard")
    page = client.get(reverse("dashboard:pair", args=["photos"])).content.decode()
    guard = page[page.index('id="guard"') :]
    assert "HOLDING</span> since" in guard
    assert "6 deletes and overwrites in 5 min, usually at most 0" in guard
    assert "Apply held changes" in guard and "Keep the backup as it is" in guard
    assert "Pause the guard" not in guard


def test_without_the_permission_the_guard_is_shown_not_released(client, pair):
    trip(pair)
    login(client)
    page = client.get(reverse("dashboard:pair", args=["photos"])).content.decode()
    assert "HOLDING" in page and "Keep the backup as it is" not in page
    response = client.post(reverse("dashboard:pair-guard", args=["photos"]), {"action": "keep"})
    assert response.status_code == 403
    assert GuardHold.objects.get(pair=pair).is_open


def test_keep_releases_and_the_evidence_stays_on_the_page(client, pair):
    trip(pair)
    user = login(client, "release_guard")
    response = client.post(
        reverse("dashboard:pair-guard", args=["photos"]), {"action": "keep"}, follow=True
    )
    text = response.content.decode()
    assert "Guard of photos released: the backup is kept as it is; 0 keys recorded as kept." in text
    assert "released: keep the backup as it is</strong> by someone" in text
    assert "tripped</strong>" in text
    hold = GuardHold.objects.get(pair=pair)
    assert hold.release == "keep" and hold.released_by == user


def test_pausing_for_hours_is_shown_and_audited_and_bad_hours_change_nothing(client, pair):
    login(client, "release_guard")
    url = reverse("dashboard:pair-guard", args=["photos"])
    text = client.post(url, {"action": "pause", "hours": "abc"}, follow=True).content.decode()
    assert "a whole number of hours, 1 to 168" in text
    assert not GuardAudit.objects.exists()
    text = client.post(url, {"action": "pause", "hours": "3"}, follow=True).content.decode()
    assert "PAUSED</span> until" in text
    assert "Resume the guard now" in text
    text = client.post(url, {"action": "resume"}, follow=True).content.decode()
    assert "WATCHING" in text
    assert [a.action for a in GuardAudit.objects.order_by("at", "id")] == ["paused", "resumed"]
    assert "Unknown guard action" in client.post(url, {"action": "x"}, follow=True).content.decode()


def test_admin_releases_a_guard_and_shows_its_settings_with_defaults(admin_client, pair):
    trip(pair)
    page = admin_client.get(reverse("admin:replication_bucketpair_change", args=[pair.pk]))
    text = page.content.decode()
    assert "Default 500." in text and "Default 10." in text
    response = admin_client.post(
        reverse("admin:replication_bucketpair_changelist"),
        {"action": "release_guard_keep", "_selected_action": [pair.pk]},
        follow=True,
    )
    assert "guard released (keep the backup as it is)" in response.content.decode()
    assert not GuardHold.objects.get(pair=pair).is_open


def test_the_held_changes_are_listed_with_key_kind_time_and_the_sources_new_etag(client, pair):
    from django.utils import timezone

    from tests.factories import record_events

    trip(pair)
    now = timezone.now() + timedelta(seconds=1)
    record_events(
        pair,
        {
            "key": "img/kept.jpg",
            "status": "held",
            "etag": "9b2cf535f27731c974343645a3985328",
            "event_time": now,
            "started_at": now,
            "finished_at": now,
        },
        {
            "key": "img/gone.jpg",
            "status": "held",
            "event_name": "ObjectRemoved:Delete",
            "etag": "",
            "event_time": now,
            "started_at": now,
            "finished_at": now,
        },
    )
    login(client)
    page = client.get(reverse("dashboard:pair", args=["photos"])).content.decode()
    held = page[page.index("Held changes") :]
    assert "(2)" in held
    assert "img/kept.jpg" in held and "overwrite" in held
    assert "9b2cf535f27731c974343645a3985328" in held
    assert "img/gone.jpg" in held and ">delete<" in held

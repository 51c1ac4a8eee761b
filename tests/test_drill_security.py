"""Drill: login everywhere, permissions, CSRF, stored XSS escaped, secrets kept out of
logs, pages and error reports.

On this branch the admin is the whole UI; /healthz is the only page without login (badges
and /metrics do not exist yet).
"""

import json
import logging
import time

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from replication.ingest import signing, store, views
from replication.models import IngestKey, ObjectState, ReconcileRun
from tests.factories import event_payload, make_ingest_key

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(autouse=True)
def _fresh_caches():
    views._keys.clear()
    store._pairs.clear()


def registered_models():
    return [model for model in apps.get_models() if admin.site.is_registered(model)]


def admin_pages(obj_by_model) -> list[str]:
    pages = [reverse("admin:index"), "/"]
    for model in registered_models():
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        obj = obj_by_model.get(model)
        if obj is not None:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
    return pages


@pytest.fixture
def hostile(pair):
    """Rows whose every free-text field carries markup, as a hostile user or bucket would.

    Pair names are slugs, refused otherwise by the database (see the test below)."""
    run = ReconcileRun.objects.create(pair=pair, status="failed", error=XSS)
    run.discrepancies.create(key=XSS, kind="missing", repair_error=XSS)
    now = timezone.now()
    state = ObjectState.objects.create(
        pair=pair,
        key=XSS,
        event_name="ObjectCreated:Put",
        event_time=now,
        sequencer="01",
        sequencer_order="01".ljust(32, "0"),
        status="failed",
        error_code="AccessDenied",
        error_message=XSS,
        finished_at=now,
        updated_at=now,
    )
    key = make_ingest_key(name=XSS[:100])
    return {type(pair): pair, ReconcileRun: run, ObjectState: state, IngestKey: key}


def test_every_page_but_healthz_needs_a_login(client, hostile):
    assert client.get("/healthz").status_code == 200
    for page in admin_pages(hostile):
        response = client.get(page, follow=True)
        assert response.redirect_chain, page
        assert response.redirect_chain[-1][0].startswith("/admin/login/"), page


def test_stored_markup_is_escaped_on_every_admin_page(admin_client, hostile):
    for page in admin_pages(hostile):
        html = admin_client.get(page, follow=True).content.decode()
        assert "<script>alert" not in html, page
        assert "<img src=x" not in html, page


def test_a_pair_name_with_markup_is_refused_by_the_database(pair):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        type(pair).objects.filter(pk=pair.pk).update(name=XSS[:50])


def test_messages_carrying_hostile_text_are_escaped(admin_client, pair, monkeypatch):
    from replication.access import Finding, Level

    monkeypatch.setattr("replication.access.check_pair", lambda *a: [Finding(Level.ERROR, XSS)])
    response = admin_client.post(
        reverse("admin:replication_bucketpair_changelist"),
        {"action": "check_access", "_selected_action": [pair.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:replication_bucketpair_add",
        "admin:replication_ingestkey_add",
        "admin:replication_bucketpair_changelist",
        "admin:auth_user_add",
        "admin:password_change",
    ],
)
def test_every_form_refuses_a_post_without_its_csrf_token(admin_user, url_name):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert 'name="csrfmiddlewaretoken"' in client.get(reverse(url_name)).content.decode()
    assert client.post(reverse(url_name), {"name": "x"}).status_code == 403


def test_the_login_form_refuses_a_post_without_its_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("admin:login"), {"username": "a", "password": "b"})
    assert response.status_code == 403


def test_staff_without_permissions_cannot_edit_a_pair(client, pair, django_user_model):
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_bucketpair"))
    client.force_login(staff)
    url = reverse("admin:replication_bucketpair_change", args=[pair.pk])
    assert 'name="_save"' not in client.get(url).content.decode()
    assert client.post(url, {"name": "renamed"}).status_code == 403
    pair.refresh_from_db()
    assert pair.name == "photos"


def test_a_new_keys_secret_is_never_logged(admin_client, caplog):
    caplog.set_level(logging.DEBUG)
    admin_client.post(reverse("admin:replication_ingestkey_add"), {"name": "fn"})
    key = IngestKey.objects.get(name="fn")
    assert key.secret not in caplog.text
    for record in caplog.records:
        assert key.secret not in json.dumps(record.__dict__, default=str)


def test_a_keys_secret_is_not_in_the_error_report_of_a_failing_request(pair, monkeypatch):
    key = make_ingest_key(name="lambda")

    def fail_while_verifying(secret, timestamp, signature, body):
        raise RuntimeError("hmac broke")

    monkeypatch.setattr(views, "verify", fail_while_verifying)
    raw = json.dumps({"events": [event_payload()]}).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-Backup-Key": key.key_id,
        "X-Backup-Timestamp": timestamp,
        "X-Backup-Signature": signing.sign(key.secret, timestamp, raw),
    }
    client = Client(raise_request_exception=True)
    with pytest.raises(RuntimeError) as failure:
        client.post("/api/v1/events", raw, content_type="application/json", headers=headers)

    report = ExceptionReporter(None, RuntimeError, failure.value, failure.tb)
    text = report.get_traceback_text() + report.get_traceback_html()
    assert "fail_while_verifying" in text  # the frame holding the secret is in the report
    assert key.secret not in text

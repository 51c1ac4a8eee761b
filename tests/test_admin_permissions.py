"""Staff who may only look cannot act: the admin's actions and audit records by permission."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from replication.models import CopyEvent, Discrepancy, ObjectState, ReconcileRun
from tests.factories import make_ingest_key

pytestmark = pytest.mark.django_db

AUDIT_MODELS = ["reconcilerun", "discrepancy", "objectstate", "copyevent"]


@pytest.fixture
def staff_client(client, django_user_model):
    """Log in a staff user holding exactly the given permissions."""

    def login(*codenames):
        user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def audit_rows(pair):
    run = ReconcileRun.objects.create(
        pair=pair, status=ReconcileRun.Status.SUCCEEDED, verdict="in_sync"
    )
    discrepancy = Discrepancy.objects.create(run=run, key="a.jpg", kind=Discrepancy.Kind.MISSING)
    when = datetime(2026, 11, 27, 12, tzinfo=UTC)
    common = {
        "pair": pair,
        "key": "a.jpg",
        "event_name": "ObjectCreated:Put",
        "event_time": when,
        "sequencer": "01",
        "sequencer_order": "01".ljust(32, "0"),
        "status": "copied",
        "finished_at": when,
    }
    state = ObjectState.objects.create(**common, updated_at=timezone.now())
    event = CopyEvent.objects.create(**common, lag=timedelta(seconds=1), received_at=timezone.now())
    return {
        "reconcilerun": run,
        "discrepancy": discrepancy,
        "objectstate": state,
        "copyevent": event,
    }


def post_action(client, model, action, pk):
    return client.post(
        reverse(f"admin:replication_{model}_changelist"),
        {"action": action, "_selected_action": [pk]},
    )


def test_staff_who_can_only_view_pairs_are_not_offered_check_access(staff_client, pair):
    client = staff_client("view_bucketpair")
    page = client.get(reverse("admin:replication_bucketpair_changelist"))
    assert page.status_code == 200
    assert "check_access" not in page.content.decode()


def test_staff_who_can_only_view_pairs_cannot_post_check_access(staff_client, pair, monkeypatch):
    probed = []
    monkeypatch.setattr("replication.access.check_pair", lambda *a: probed.append(a) or [])
    client = staff_client("view_bucketpair")
    post_action(client, "bucketpair", "check_access", pair.pk)
    assert probed == []


def test_staff_who_can_change_pairs_may_check_access(staff_client, pair, monkeypatch):
    probed = []
    monkeypatch.setattr("replication.access.check_pair", lambda *a: probed.append(a) or [])
    client = staff_client("view_bucketpair", "change_bucketpair")
    post_action(client, "bucketpair", "check_access", pair.pk)
    assert len(probed) == 1


def test_staff_who_can_only_view_keys_cannot_revoke_them(staff_client):
    key = make_ingest_key()
    client = staff_client("view_ingestkey")
    page = client.get(reverse("admin:replication_ingestkey_changelist"))
    assert 'value="revoke"' not in page.content.decode()
    post_action(client, "ingestkey", "revoke", key.pk)
    key.refresh_from_db()
    assert key.is_active


def test_staff_who_can_change_keys_may_revoke_them(staff_client):
    key = make_ingest_key()
    client = staff_client("view_ingestkey", "change_ingestkey")
    post_action(client, "ingestkey", "revoke", key.pk)
    key.refresh_from_db()
    assert not key.is_active


@pytest.mark.parametrize("model", AUDIT_MODELS)
def test_audit_records_cannot_be_added_edited_or_deleted_by_staff(staff_client, audit_rows, model):
    codenames = [f"{verb}_{model}" for verb in ("add", "change", "delete", "view")]
    client = staff_client(*codenames)
    row = audit_rows[model]
    changelist = reverse(f"admin:replication_{model}_changelist")
    assert client.get(changelist).status_code == 200
    assert client.get(reverse(f"admin:replication_{model}_add")).status_code == 403
    assert (
        client.get(reverse(f"admin:replication_{model}_delete", args=[row.pk])).status_code == 403
    )
    post_action(client, model, "delete_selected", row.pk)
    assert type(row).objects.filter(pk=row.pk).exists()
    change = client.get(reverse(f"admin:replication_{model}_change", args=[row.pk]))
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()


@pytest.mark.parametrize("model", AUDIT_MODELS)
def test_audit_records_are_never_added_or_edited_even_by_a_superuser(
    admin_client, audit_rows, model
):
    row = audit_rows[model]
    assert admin_client.get(reverse(f"admin:replication_{model}_add")).status_code == 403
    change = admin_client.get(reverse(f"admin:replication_{model}_change", args=[row.pk]))
    assert 'name="_save"' not in change.content.decode()


def test_a_superuser_may_delete_an_audit_record(admin_client, audit_rows):
    run = audit_rows["reconcilerun"]
    response = admin_client.post(
        reverse("admin:replication_reconcilerun_delete", args=[run.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not ReconcileRun.objects.filter(pk=run.pk).exists()

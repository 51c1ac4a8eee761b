"""Alerts in the admin: channels (secret shown once, test action behind a permission), and
the health history and deliveries, read-only."""

import logging

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.urls import reverse

from replication.models import AlertChannel, HealthChange, Notification
from tests.factories import make_pair

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings):
    """The webhooks here point at loopback, which they may not reach by default."""
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]


CHANGELIST = "admin:replication_alertchannel_changelist"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def add_channel(client, **fields):
    data = {"name": "hook", "kind": "webhook", "target": "https://hooks.example.com/x"}
    data |= {"enabled": "on"} | fields
    return client.post(reverse("admin:replication_alertchannel_add"), data)


def send_test(client, channel):
    return client.post(
        reverse(CHANGELIST),
        {"action": "send_test_notification", "_selected_action": [channel.pk]},
        follow=True,
    )


def test_a_new_webhook_channel_shows_its_secret_once_and_never_logs_it(admin_client, caplog):
    pair = make_pair()
    with caplog.at_level(logging.DEBUG):
        response = add_channel(admin_client, pairs=[pair.pk])
    channel = AlertChannel.objects.get(name="hook")
    assert response.status_code == 200
    assert channel.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert list(channel.pairs.all()) == [pair]
    page = admin_client.get(reverse("admin:replication_alertchannel_change", args=[channel.pk]))
    assert channel.secret not in page.content.decode()
    assert channel.secret not in caplog.text


def test_a_new_email_channel_has_no_secret_page(admin_client):
    response = add_channel(admin_client, name="ops", kind="email", target="a@x.com, b@x.com")
    assert response.status_code == 302
    assert AlertChannel.objects.get(name="ops").recipients == ["a@x.com", "b@x.com"]


@pytest.mark.parametrize(
    ("kind", "target", "problem"),
    [
        ("email", "ops@example.com, nobody", "is not an e-mail address"),
        ("webhook", "ftp://example.com/x", "http:// or https:// URL"),
        ("slack", "hooks.slack.com/services/x", "http:// or https:// URL"),
    ],
)
def test_a_channel_with_a_bad_target_is_refused_with_the_reason(
    admin_client, kind, target, problem
):
    response = add_channel(admin_client, kind=kind, target=target)
    assert response.status_code == 200
    assert problem in response.content.decode()
    assert not AlertChannel.objects.exists()


@pytest.mark.parametrize("target", ["", "   "])
def test_a_channel_without_a_target_gets_one_error_for_one_mistake(admin_client, target):
    response = add_channel(admin_client, kind="email", target=target)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"target": ["This field is required."]}
    assert not AlertChannel.objects.exists()


def test_send_test_notification_sends_and_records_it(admin_client, mailoutbox):
    channel = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    response = send_test(admin_client, channel)
    assert messages_of(response) == ["ops: test notification sent."]
    assert mailoutbox[0].subject == "[backupsite] Test notification to ops"
    record = Notification.objects.get()
    assert (record.kind, record.status, record.attempts) == ("test", "sent", 1)


def test_a_failed_test_notification_says_why_and_is_not_retried(admin_client):
    channel = AlertChannel.objects.create(
        name="hook", kind="webhook", target="http://127.0.0.1:9/nothing-listens"
    )
    response = send_test(admin_client, channel)
    (message,) = messages_of(response)
    assert message.startswith("hook: test notification failed: could not connect")
    assert channel.target not in message
    assert Notification.objects.get().status == "failed"


def test_send_test_notification_needs_its_permission(client, mailoutbox):
    channel = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_alertchannel", "change_alertchannel"])
    )
    client.force_login(staff)
    page = client.get(reverse(CHANGELIST))
    assert "send_test_notification" not in page.content.decode()
    send_test(client, channel)
    assert mailoutbox == []
    staff.user_permissions.add(Permission.objects.get(codename="test_alertchannel"))
    send_test(client, channel)
    assert len(mailoutbox) == 1


def test_history_and_deliveries_are_listed_read_only(admin_client):
    pair = make_pair(name="photos")
    change = HealthChange.objects.create(
        pair=pair, sequence=1, to_state="critical", reason="3 missing"
    )
    channel = AlertChannel.objects.create(name="ops", kind="email", target="o@example.com")
    notification = Notification.objects.create(
        change=change, channel=channel, kind="alert", last_error="HTTP 500"
    )
    changes = admin_client.get(reverse("admin:replication_healthchange_changelist"))
    assert "3 missing" in changes.content.decode()
    deliveries = admin_client.get(reverse("admin:replication_notification_changelist"))
    assert "HTTP 500" in deliveries.content.decode()
    assert admin_client.get(reverse("admin:replication_notification_add")).status_code == 403
    detail = admin_client.get(
        reverse("admin:replication_notification_change", args=[notification.pk])
    )
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    delete = reverse("admin:replication_healthchange_delete", args=[change.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert HealthChange.objects.count() == 1


def test_a_pairs_page_lists_its_alert_channels(admin_client):
    pair = make_pair(name="photos")
    AlertChannel.objects.create(name="ops", kind="email", target="o@example.com").pairs.add(pair)
    page = admin_client.get(reverse("admin:replication_bucketpair_change", args=[pair.pk]))
    assert page.status_code == 200
    assert "alert channels" in page.content.decode().lower()


def test_a_disabled_channel_can_be_tested_before_it_is_enabled(admin_client, mailoutbox):
    channel = AlertChannel.objects.create(
        name="new", kind="email", target="n@example.com", enabled=False
    )
    assert messages_of(send_test(admin_client, channel)) == ["new: test notification sent."]
    assert len(mailoutbox) == 1


def test_a_channels_kind_cannot_change_after_creation(admin_client):
    channel = AlertChannel.objects.create(name="ops", kind="email", target="o@example.com")
    url = reverse("admin:replication_alertchannel_change", args=[channel.pk])
    assert 'name="kind"' not in admin_client.get(url).content.decode()
    assert (
        'name="kind"'
        in admin_client.get(reverse("admin:replication_alertchannel_add")).content.decode()
    )


def regenerate(client, *channels):
    return client.post(
        reverse(CHANGELIST),
        {"action": "regenerate_secret", "_selected_action": [c.pk for c in channels]},
        follow=True,
    )


def test_regenerating_a_webhook_secret_shows_the_new_one_once_and_records_it(admin_client, caplog):
    channel = AlertChannel.objects.create(name="hook", kind="webhook", target="https://x.io/h")
    old = channel.secret
    with caplog.at_level(logging.DEBUG):
        response = regenerate(admin_client, channel)
    channel.refresh_from_db()

    assert channel.secret != old
    page = response.content.decode()
    assert channel.secret in page and old not in page
    assert "the old one no longer verifies" in page
    assert "no-store" in response["Cache-Control"]
    assert channel.secret not in caplog.text
    history = admin_client.get(reverse("admin:replication_alertchannel_history", args=[channel.pk]))
    assert "Regenerated the signing secret." in history.content.decode()


@pytest.mark.parametrize("which", ["an e-mail channel", "two webhooks"])
def test_regenerate_takes_exactly_one_webhook_and_otherwise_changes_nothing(admin_client, which):
    hook = AlertChannel.objects.create(name="hook", kind="webhook", target="https://x.io/h")
    other = AlertChannel.objects.create(name="hook-2", kind="webhook", target="https://x.io/2")
    ops = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    before = dict(AlertChannel.objects.values_list("name", "secret"))

    response = regenerate(admin_client, *([ops] if which == "an e-mail channel" else [hook, other]))

    (message,) = messages_of(response)
    assert message.startswith("Select one JSON webhook channel")
    assert dict(AlertChannel.objects.values_list("name", "secret")) == before


def test_regenerate_needs_the_right_to_change_channels(client):
    channel = AlertChannel.objects.create(name="hook", kind="webhook", target="https://x.io/h")
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_alertchannel"))
    client.force_login(viewer)

    assert "regenerate_secret" not in client.get(reverse(CHANGELIST)).content.decode()
    regenerate(client, channel)
    assert AlertChannel.objects.get().secret == channel.secret

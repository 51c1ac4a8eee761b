"""Webhook targets: public addresses only, checked when a channel is saved and again at every
connection against the address connected to; failures say nothing of the server's network."""

import ipaddress
import socket

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from replication.alerts import channels, targets
from replication.alerts.targets import address_refused
from replication.models import AlertChannel, Notification
from tests.alerts_support import running_receiver

ip = ipaddress.ip_address


@pytest.fixture
def receiver():
    yield from running_receiver()


@pytest.fixture
def resolves_to(monkeypatch):
    """Make every host name resolve to the addresses given (a DNS answer we choose)."""
    answers: list[str] = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]

    monkeypatch.setattr(targets.socket, "getaddrinfo", fake_getaddrinfo)

    def set_answers(*addresses: str) -> None:
        answers[:] = addresses

    return set_answers


# --- The rule (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "169.254.169.254",  # the cloud metadata service
        "fe80::1",
        "0.0.0.0",  # noqa: S104 (an address refused, not one bound to)
        "::",
        "224.0.0.1",
        "240.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_loopback_link_local_and_reserved_addresses_are_refused_even_when_private_is_allowed(
    address,
):
    assert address_refused(ip(address), allow_private=False)
    assert address_refused(ip(address), allow_private=True)


@pytest.mark.parametrize(
    "address", ["10.0.0.5", "172.16.3.4", "192.168.1.10", "100.64.0.1", "fd12:3456::1"]
)
def test_private_addresses_are_refused_unless_allowed(address):
    assert address_refused(ip(address), allow_private=False)
    assert not address_refused(ip(address), allow_private=True)


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert not address_refused(ip(address), allow_private=False)


def test_an_allowed_network_is_an_explicit_exception():
    assert not address_refused(
        ip("127.0.0.1"), allow_private=False, allowed_networks=["127.0.0.0/8"]
    )
    assert address_refused(ip("127.0.0.1"), allow_private=False, allowed_networks=["10.0.0.0/8"])


# --- At save ----------------------------------------------------------------------------------


def add_webhook(client, target):
    return client.post(
        reverse("admin:replication_alertchannel_add"),
        {"name": "hook", "kind": "webhook", "target": target, "enabled": "on"},
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8000/hook",
        "http://127.0.0.1/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://2130706433/hook",  # 127.0.0.1 written as one number
    ],
)
def test_a_webhook_to_a_non_public_address_is_refused_at_save_with_one_error(admin_client, target):
    response = add_webhook(admin_client, target)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count("Alerts are sent only to public addresses") == 1
    assert not AlertChannel.objects.exists()


@pytest.mark.django_db
def test_a_webhook_to_a_name_resolving_privately_is_refused_at_save(admin_client, resolves_to):
    resolves_to("93.184.215.14", "10.0.0.7")  # one private answer is enough
    response = add_webhook(admin_client, "https://hooks.example.com/x")
    assert "Alerts are sent only to public addresses" in response.content.decode()
    assert not AlertChannel.objects.exists()


@pytest.mark.django_db
def test_private_webhooks_are_accepted_when_the_setting_allows_them(
    admin_client, resolves_to, settings
):
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True
    resolves_to("10.0.0.7")
    add_webhook(admin_client, "https://alerts.corp.example/x")
    assert AlertChannel.objects.get(name="hook").target == "https://alerts.corp.example/x"


@pytest.mark.django_db
def test_a_public_webhook_is_saved(admin_client, resolves_to):
    resolves_to("93.184.215.14")
    add_webhook(admin_client, "https://hooks.example.com/x")
    assert AlertChannel.objects.filter(name="hook").exists()


# --- At connect time --------------------------------------------------------------------------


def test_a_loopback_target_is_refused_at_connect_time_and_never_reached(receiver):
    with pytest.raises(channels.DeliveryError) as refused:
        channels.post(receiver.url + "/hook", b"{}", {}, timeout=2)
    assert str(refused.value) == "refused: target resolves to a private address"
    assert receiver.requests == []


def test_a_name_that_resolved_publicly_at_save_and_privately_later_is_refused(
    receiver, resolves_to
):
    # DNS rebinding: what matters is the address connected to, at the moment of connecting.
    resolves_to("127.0.0.1")
    port = receiver.server.server_port
    with pytest.raises(channels.DeliveryError, match=r"^refused: target resolves to a private"):
        channels.post(f"http://hooks.example.com:{port}/hook", b"{}", {}, timeout=2)
    assert receiver.requests == []


def test_the_checked_address_is_the_one_connected_to(receiver, resolves_to, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    resolves_to("127.0.0.1")
    port = receiver.server.server_port
    channels.post(f"http://hooks.example.com:{port}/hook", b"{}", {}, timeout=2)
    assert [r["path"] for r in receiver.requests] == ["/hook"]


@pytest.mark.django_db
def test_a_test_notification_to_a_refused_target_says_only_that(admin_client):
    channel = AlertChannel.objects.create(
        name="meta", kind="webhook", target="http://169.254.169.254/latest/meta-data/"
    )
    response = admin_client.post(
        reverse("admin:replication_alertchannel_changelist"),
        {"action": "send_test_notification", "_selected_action": [channel.pk]},
        follow=True,
    )
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == [
        "meta: test notification failed: refused: target resolves to a private address"
    ]
    assert Notification.objects.get().last_error == (
        "refused: target resolves to a private address"
    )


@pytest.mark.django_db
def test_a_test_notification_that_cannot_connect_gives_no_network_detail(admin_client, settings):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # nothing listens: "connection refused", which is not said
    channel = AlertChannel.objects.create(
        name="gone", kind="webhook", target=f"http://127.0.0.1:{closed.getsockname()[1]}/x"
    )
    response = admin_client.post(
        reverse("admin:replication_alertchannel_changelist"),
        {"action": "send_test_notification", "_selected_action": [channel.pk]},
        follow=True,
    )
    closed.close()
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert message == (
        "gone: test notification failed: could not connect to the target, "
        "or it gave no answer within 5 s"
    )
    assert "Connection refused" not in message and "Errno" not in message

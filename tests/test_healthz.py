"""/healthz: no login; 200 when the database and a configured broker answer, else 503."""

import socket

import pytest
from django.db import OperationalError

from replication.monitoring import probes
from tests.conftest import redis_url_or_skip

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def test_healthz_answers_200_when_the_database_answers_and_no_broker_is_configured(
    client, settings
):
    settings.REDIS_URL = ""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert "no-store" in response["Cache-Control"]


def test_healthz_names_an_unreachable_broker_with_503(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unreachable"}


def test_healthz_names_a_failing_database_with_503(client, settings, monkeypatch):
    settings.REDIS_URL = ""

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(probes.connection, "cursor", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


@pytest.mark.redis
def test_healthz_answers_200_when_the_real_broker_answers(client, settings):
    settings.REDIS_URL = redis_url_or_skip()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["broker"] == "ok"


def test_healthz_needs_no_login_and_never_touches_s3(client, settings, monkeypatch):
    from replication import s3

    settings.REDIS_URL = ""
    monkeypatch.setattr(s3, "client", lambda *a, **k: pytest.fail("healthz touched S3"))
    assert client.get("/healthz").status_code == 200

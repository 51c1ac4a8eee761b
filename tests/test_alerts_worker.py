"""A delivery on a real worker through Redis: Celery's declared retries, with the backoff
shortened to a second so the test waits seconds, not minutes."""

import os
import time

import pytest
from django.db import connection

from backupsite.celery import app
from replication.models import AlertChannel, HealthChange, Notification
from tests.alerts_support import running_receiver
from tests.factories import make_pair

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def receiver():
    yield from running_receiver()


def _test_database_url() -> str:
    # The worker must read the database this test writes: pytest-django's test_<name>.
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return ""
    base, name = url.rsplit("/", 1)
    return f"{base}/test_{name}"


@pytest.fixture
def needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): the worker reads the test's database")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "celery_worker",
    [
        {
            "DATABASE_URL": _test_database_url(),
            "ALERT_RETRY_BACKOFF": "1",
            # The receiver listens on loopback, which webhooks may not reach by default.
            "ALERT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        }
    ],
    indirect=True,
)
def test_a_failing_webhook_is_retried_by_the_worker_until_it_is_sent(
    needs_postgres, receiver, celery_worker
):
    pair = make_pair(name="photos")
    channel = AlertChannel.objects.create(
        name="hook", kind="webhook", target=receiver.url + "/hook", all_pairs=True
    )
    receiver.secret = channel.secret
    receiver.statuses = {"/hook": [500, 502]}
    change = HealthChange.objects.create(pair=pair, sequence=1, to_state="critical", reason="x")
    notification = Notification.objects.create(change=change, channel=channel, kind="alert")

    app.send_task(
        "replication.alerts.tasks.deliver_notification",
        args=[notification.id],
        queue=celery_worker,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        notification.refresh_from_db()
        if notification.status in ("sent", "failed"):
            break
        time.sleep(0.2)
    assert (notification.status, notification.attempts) == ("sent", 3)
    assert [r["signed"] for r in receiver.posts("/hook")] == [True, True, True]

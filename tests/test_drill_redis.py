"""Drill: Redis stopped, then back. "Reconcile now" says the queue is unavailable; once Redis
is back a reconcile runs normally on a worker.

A private redis-server on a port of its own is stopped and started (never the shared one),
and the worker shares the PostgreSQL test database, so this needs PostgreSQL.
"""

import os
import shutil
import socket
import subprocess
import time
from urllib.parse import urlsplit

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse

from backupsite.celery import app
from replication.models import ReconcileRun
from tests.factories import make_pair
from tests.test_reconcile_e2e import Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self, binary: str, workdir):
        self.binary, self.workdir, self.port = binary, workdir, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def forget_broker_connections() -> None:
    """Drop the app's pooled connections and producers, which keep the broker they were made
    for: the next publish then connects to the current broker_url. Celery does exactly this
    in a forked child; its public close() would also unregister the app."""
    app._after_fork()


@pytest.fixture
def private_redis(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH: the drill starts a private one")
    redis = PrivateRedis(binary, tmp_path)
    names = ("broker_url", "broker_write_url", "broker_read_url", "result_backend")
    saved = {name: app.conf.get(name) for name in (*names, "task_always_eager")}
    app.conf.update(dict.fromkeys(names, redis.url), task_always_eager=False)
    forget_broker_connections()
    try:
        yield redis
    finally:
        redis.stop()
        app.conf.update(saved)
        forget_broker_connections()


def reconcile_now(client, pair) -> list[str]:
    response = client.post(
        reverse("admin:replication_bucketpair_changelist"),
        {"action": "reconcile_now", "_selected_action": [pair.pk]},
        follow=True,
    )
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_reconcile_now_with_redis_down_says_so_then_runs_once_it_is_back(
    transactional_db, admin_client, private_redis, moto_server, fill, tmp_path
):
    if connection.vendor != "postgresql" or not os.environ.get("DATABASE_URL"):
        pytest.skip("needs PostgreSQL (DATABASE_URL): the worker shares the test database")
    fill("drill-src", {f"k{n}": b"same" for n in range(50)})
    fill("drill-bak", {f"k{n}": b"same" for n in range(40)})
    pair = make_pair(source_bucket="drill-src", backup_bucket="drill-bak", grace_seconds=0)

    # Redis down.
    (message,) = reconcile_now(admin_client, pair)
    refused = ReconcileRun.objects.get(pair=pair)
    assert refused.status == "failed"
    assert message.startswith(f"Run #{refused.pk} of {pair.name} failed: the task queue is ")
    assert "unavailable" in message

    # Redis back, and a worker on it.
    private_redis.start()
    database_url = urlsplit(os.environ["DATABASE_URL"])
    database_url = database_url._replace(path="/" + connection.settings_dict["NAME"]).geturl()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": private_redis.url,
        "AWS_ENDPOINT_URL": moto_server,
        "EMBEDDED_S3": "false",
    }
    worker = Worker(env, tmp_path, queue="celery").start()
    try:
        (message,) = reconcile_now(admin_client, pair)
        run = ReconcileRun.objects.exclude(pk=refused.pk).get(pair=pair)
        assert message.startswith(f"Run #{run.pk} of {pair.name} queued")
        done = wait_for(
            lambda: (
                (r := ReconcileRun.objects.get(pk=run.pk)).status not in ReconcileRun.ACTIVE and r
            ),
            timeout=90,
            worker=worker,
            what="the worker to reconcile the pair",
        )
    finally:
        worker.stop()
    assert (done.status, done.missing, done.source_objects) == ("succeeded", 10, 50), done.error

"""A real round trip: a task sent through Redis runs in a separate worker process."""

import pytest

from backupsite.celery import app

pytestmark = pytest.mark.redis


def test_a_task_sent_through_redis_runs_on_a_real_worker(celery_worker):
    result = app.send_task("backupsite.ping", queue=celery_worker)
    assert result.get(timeout=60) == "pong"
    assert result.successful()


def test_tasks_run_in_process_when_no_broker_is_configured():
    from backupsite.celery import ping

    assert ping.delay().get(timeout=1) == "pong"

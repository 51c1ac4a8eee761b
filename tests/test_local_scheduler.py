"""The in-process scheduler of `make run` and `make demo`: beat's schedule without beat."""

import threading
import time
from datetime import timedelta

import pytest
from celery import shared_task
from celery.schedules import crontab
from django.core import mail
from django.db import connection, connections

from replication.demo.scheduler import Scheduler
from replication.models import AlertChannel, BucketPair
from tests.factories import make_pair, record_events

ticks: list[str] = []
used = []  # the connection each tick used
ticked = threading.Event()


@shared_task(name="tests.scheduler.tick")
def tick(label: str = "tick") -> int:
    ticks.append(label)
    count = BucketPair.objects.count()  # a query: the job opens a database connection
    used.append(connections["default"])
    ticked.set()
    return count


@shared_task(name="tests.scheduler.explode")
def explode() -> None:
    raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def fresh_ticks():
    ticks.clear()
    used.clear()
    ticked.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_entry_of_the_beat_schedule_becomes_a_job_of_a_known_task(settings):
    scheduler = Scheduler()
    names = {job.name for job in scheduler.jobs}
    assert names == set(settings.CELERY_BEAT_SCHEDULE)
    assert "evaluate-health" in names
    health = next(job for job in scheduler.jobs if job.name == "evaluate-health")
    assert health.period == 60
    assert "evaluate-health (every 1 min)" in scheduler.describe()


@pytest.mark.django_db
def test_a_job_runs_once_its_period_has_passed_and_again_a_period_later():
    clock = Clock()
    scheduler = Scheduler(
        {"tick": {"task": "tests.scheduler.tick", "schedule": 60.0, "args": ("a",)}}, clock=clock
    )
    assert scheduler.run_due() == 0  # as beat does: not at once, one period after the start
    clock.now += 60
    assert scheduler.run_due() == 1
    clock.now += 30
    assert scheduler.run_due() == 0
    clock.now += 30
    assert scheduler.run_due() == 1
    assert ticks == ["a", "a"]


@pytest.mark.django_db
def test_a_failing_job_is_logged_and_the_others_still_run(caplog):
    clock = Clock()
    scheduler = Scheduler(
        {
            "explode": {"task": "tests.scheduler.explode", "schedule": timedelta(seconds=10)},
            "tick": {"task": "tests.scheduler.tick", "schedule": 10.0},
        },
        clock=clock,
    )
    for _ in range(3):
        clock.now += 10
        assert scheduler.run_due() == 2
    assert ticks == ["tick"] * 3
    assert scheduler.failures == 3
    assert "scheduled job explode (tests.scheduler.explode) failed" in caplog.text
    assert "RuntimeError: boom" in caplog.text


def test_a_crontab_entry_waits_until_its_next_time():
    scheduler = Scheduler({"nightly": {"task": "tests.scheduler.tick", "schedule": crontab()}})
    (job,) = scheduler.jobs
    assert job.period is None
    assert 1 <= job.seconds_to_wait() <= 60  # crontab(): every minute, on the minute


@pytest.mark.django_db(transaction=True)
def test_the_thread_survives_a_failing_job_and_closes_its_connections(caplog):
    scheduler = Scheduler(
        {
            "explode": {"task": "tests.scheduler.explode", "schedule": 0.05},
            "tick": {"task": "tests.scheduler.tick", "schedule": 0.05},
        }
    )
    with scheduler:
        deadline = time.monotonic() + 10
        while len(ticks) < 3 and time.monotonic() < deadline:
            ticked.wait(0.5)
            ticked.clear()
        assert scheduler._thread.is_alive()
    assert not scheduler._thread.is_alive()
    assert len(ticks) >= 3
    assert scheduler.failures >= 1 and "RuntimeError: boom" in caplog.text
    # Each run used a connection of the scheduler's thread, and closed it after.
    assert all(c is not connections["default"] for c in used)
    # SQLite's in-memory test database is one connection that every thread shares.
    if not (connection.vendor == "sqlite" and connection.is_in_memory_db()):
        assert [c.connection for c in used] == [None] * len(used)


@pytest.mark.django_db(transaction=True)
def test_health_evaluated_by_the_scheduler_sends_the_alert(settings):
    """No beat, no worker: the demo's own incidents still reach their channels."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    pair = make_pair(name="photos", grace_seconds=60)
    AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com", all_pairs=True)
    failed_at = "2026-01-01T00:00:00Z"
    record_events(
        pair,
        {
            "key": "img/lost.jpg",
            "status": "failed",
            "error_code": "AccessDenied",
            "error_message": "Access Denied",
            "event_time": failed_at,
            "started_at": failed_at,
            "finished_at": failed_at,
        },
    )
    scheduler = Scheduler()
    (health,) = [job for job in scheduler.jobs if job.name == "evaluate-health"]

    assert scheduler.run(health)

    assert len(mail.outbox) == 1
    assert "photos" in mail.outbox[0].subject
    assert "CRITICAL" in mail.outbox[0].subject.upper()


def test_make_run_and_make_demo_run_the_schedule_when_there_is_no_broker(settings):
    from replication.demo.scheduler import local_scheduler

    said = []
    settings.CELERY_TASK_ALWAYS_EAGER = True
    with local_scheduler(said.append) as scheduler:
        assert scheduler is not None and scheduler._thread.is_alive()
    assert not scheduler._thread.is_alive()
    assert said[0].startswith("Periodic jobs run in this process: ")


def test_with_a_broker_the_schedule_is_left_to_beat(settings):
    from replication.demo.scheduler import local_scheduler

    said = []
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with local_scheduler(said.append) as scheduler:
        assert scheduler is None
    assert said == [
        "REDIS_URL is set: periodic jobs run from beat (`make worker` and `make beat`)."
    ]

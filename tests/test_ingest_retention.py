"""Retention: per-event rows expire after EVENT_RETENTION_DAYS; current state stays."""

import json
from datetime import UTC, datetime, timedelta

from django.conf import settings as django_settings

from replication import tasks
from replication.ingest import retention, schema, store
from replication.models import CopyEvent, ObjectState
from tests.factories import event_payload

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def receive(*payloads, at: datetime) -> None:
    events = schema.parse_batch(json.dumps({"events": list(payloads)}).encode(), max_events=1000)
    store.store_batch(events, received_at=at)


def test_events_older_than_the_retention_period_are_deleted_in_batches(pair, settings):
    settings.EVENT_RETENTION_DAYS = 90
    receive(*[event_payload(key=f"old/{i}") for i in range(5)], at=NOW - timedelta(days=91))
    receive(event_payload(key="recent"), at=NOW - timedelta(days=89))

    deleted = retention.purge_expired_events(now=NOW, batch_size=2)

    assert deleted == 5
    assert list(CopyEvent.objects.values_list("key", flat=True)) == ["recent"]


def test_current_state_is_kept_when_its_events_expire(pair, settings):
    settings.EVENT_RETENTION_DAYS = 30
    receive(event_payload(key="k", status="failed"), at=NOW - timedelta(days=31))

    retention.purge_expired_events(now=NOW)

    assert not CopyEvent.objects.exists()
    assert ObjectState.objects.get(key="k").status == "failed"


def test_nothing_to_delete_deletes_nothing(pair):
    receive(event_payload(), at=NOW)
    assert retention.purge_expired_events(now=NOW) == 0
    assert CopyEvent.objects.count() == 1


def test_task_purges_with_the_configured_retention(pair, settings):
    settings.EVENT_RETENTION_DAYS = 1
    receive(event_payload(key="old"), at=datetime.now(UTC) - timedelta(days=2))
    receive(event_payload(key="new"), at=datetime.now(UTC))

    assert tasks.purge_expired_events.delay().get() == 1
    assert list(CopyEvent.objects.values_list("key", flat=True)) == ["new"]


def test_beat_runs_the_purge_hourly_and_drops_missed_ticks():
    entry = django_settings.CELERY_BEAT_SCHEDULE["purge-expired-events"]
    assert entry["task"] == tasks.purge_expired_events.name
    assert entry["options"]["expires"] < entry["schedule"]

"""Retention: per-event rows expire after EVENT_RETENTION_DAYS; current state stays."""

import json
from datetime import UTC, datetime, timedelta

from django.conf import settings as django_settings

from replication import tasks
from replication.ingest import retention, schema, store
from replication.models import CopyEvent, ObjectState
from tests.factories import event_payload, make_pair

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def receive(*payloads, finished: datetime) -> None:
    """Store events that finished at ``finished``, as if received then."""
    stamp = finished.isoformat()
    payloads = [
        {**p, "event_time": stamp, "started_at": stamp, "finished_at": stamp} for p in payloads
    ]
    events = schema.parse_batch(json.dumps({"events": payloads}).encode(), max_events=1000)
    store.store_batch(events, received_at=finished)


def test_events_older_than_the_retention_period_are_deleted_in_batches_for_every_pair(
    pair, settings
):
    settings.EVENT_RETENTION_DAYS = 90
    receive(*[event_payload(key=f"old/{i}") for i in range(5)], finished=NOW - timedelta(days=91))
    receive(event_payload(key="recent"), finished=NOW - timedelta(days=89))
    other = make_pair(source_bucket="other-src", backup_bucket="other-bak")
    receive(
        event_payload(source_bucket="other-src", destination_bucket="other-bak", key="other/old"),
        finished=NOW - timedelta(days=100),
    )

    deleted = retention.purge_expired_events(now=NOW, batch_size=2)

    assert deleted == 6
    assert list(CopyEvent.objects.values_list("key", flat=True)) == ["recent"]
    assert not CopyEvent.objects.filter(pair=other).exists()


def test_current_state_is_kept_when_its_events_expire(pair, settings):
    settings.EVENT_RETENTION_DAYS = 30
    receive(event_payload(key="k", status="failed"), finished=NOW - timedelta(days=31))

    retention.purge_expired_events(now=NOW)

    assert not CopyEvent.objects.exists()
    assert ObjectState.objects.get(key="k").status == "failed"


def test_nothing_to_delete_deletes_nothing(pair):
    receive(event_payload(), finished=NOW)
    assert retention.purge_expired_events(now=NOW) == 0
    assert CopyEvent.objects.count() == 1


def test_task_purges_with_the_configured_retention(pair, settings):
    settings.EVENT_RETENTION_DAYS = 1
    receive(event_payload(key="old"), finished=datetime.now(UTC) - timedelta(days=2))
    receive(event_payload(key="new"), finished=datetime.now(UTC))

    assert tasks.purge_expired_events.delay().get() == 1
    assert list(CopyEvent.objects.values_list("key", flat=True)) == ["new"]


def test_beat_runs_the_purge_hourly_and_drops_missed_ticks():
    entry = django_settings.CELERY_BEAT_SCHEDULE["purge-expired-events"]
    assert entry["task"] == tasks.purge_expired_events.name
    assert entry["options"]["expires"] < entry["schedule"]

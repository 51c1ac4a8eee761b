"""Small factories for the objects most tests need. Keyword arguments override defaults."""

import itertools

from replication.models import BucketPair, IngestKey

_seq = itertools.count(1)


def make_pair(**fields) -> BucketPair:
    n = next(_seq)
    values = {
        "name": f"pair-{n}",
        "source_bucket": f"source-{n}",
        "backup_bucket": f"backup-{n}",
    }
    values.update(fields)
    pair = BucketPair(**values)
    pair.full_clean()
    pair.save()
    return pair


def make_ingest_key(**fields) -> IngestKey:
    values = {"name": f"key-{next(_seq)}"}
    values.update(fields)
    return IngestKey.objects.create(**values)


_event_seq = itertools.count(1)


def event_payload(**fields) -> dict:
    """One copy result as the Lambda reports it, for the ``pair`` fixture's buckets."""
    n = next(_event_seq)
    values = {
        "source_bucket": "photos-src",
        "destination_bucket": "photos-bak",
        "key": f"img/{n}.jpg",
        "version_id": None,
        "event_name": "ObjectCreated:Put",
        "event_time": "2026-11-27T12:00:00.000Z",
        "sequencer": f"{n:018X}",
        "size": 1024,
        "etag": '"d41d8cd98f00b204e9800998ecf8427e"',
        "status": "copied",
        "error_code": None,
        "error_message": None,
        "started_at": "2026-11-27T12:00:01Z",
        "finished_at": "2026-11-27T12:00:02.500Z",
        "request_id": f"req-{n}",
        "attempt": 1,
    }
    values.update(fields)
    return values


def record_events(pair: BucketPair, *events: dict) -> None:
    """Store copy results for ``pair`` through the real ingest path (events and state).

    Each dict overrides ``event_payload``'s fields; datetimes may be given as such.
    """
    import json
    from datetime import datetime

    from django.utils import timezone

    from replication.ingest.schema import parse_batch
    from replication.ingest.store import store_batch

    def as_json(value):
        return value.isoformat() if isinstance(value, datetime) else value

    payloads = [
        {
            **event_payload(
                source_bucket=pair.source_bucket,
                destination_bucket=pair.backup_bucket,
                key=pair.source_prefix + f"img/{next(_event_seq)}.jpg",
            ),
            **{name: as_json(value) for name, value in fields.items()},
        }
        for fields in events
    ]
    body = json.dumps({"events": payloads}).encode()
    result = store_batch(parse_batch(body, max_events=10_000), timezone.now())
    assert not result.rejected, result.rejected


def record_run(pair: BucketPair, verdict: str = "in_sync", *, age=None, **counts):
    """A finished reconcile of ``pair`` with the findings a real run writes: one "missing"
    or "mismatched" finding per counted object (keys ``missing-N`` / ``mismatched-N``, their
    source objects written ``age`` ago, an hour by default), and, for a run that found
    nothing lacking, "in sync" for every object a finding of an earlier run said was lacking.
    """
    from datetime import timedelta

    from django.utils import timezone

    from replication.models import ObjectState, ReconcileRun
    from replication.models.events import Finding

    now = timezone.now()
    run = ReconcileRun.objects.create(
        pair=pair,
        status="succeeded",
        verdict=verdict,
        started_at=now,
        finished_at=now,
        **counts,
    )
    written = now - (age if age is not None else timedelta(hours=1))
    found = {
        f"{pair.source_prefix}{kind}-{n}": kind
        for kind in (Finding.MISSING, Finding.MISMATCHED)
        for n in range(counts.get(kind, 0))
    }
    if not found:
        for state in ObjectState.objects.lacking().filter(pair=pair):
            found[state.key] = Finding.IN_SYNC
    for key, finding in found.items():
        ObjectState.objects.update_or_create(
            pair=pair,
            key=key,
            defaults={
                "finding": finding,
                "finding_run": run,
                "finding_at": now,
                "source_modified_at": written,
            },
        )
    return run

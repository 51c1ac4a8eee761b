"""Storing a validated batch of copy results (the ORM edge of the ingest API).

One batch, one transaction: every event row and every current-state change of a batch is
committed together or not at all, so a sender that sees an error can simply send again.
Both writes let the database settle races, with no read-then-write:

- events:  INSERT ... ON CONFLICT DO NOTHING; the unique constraint drops repeats, and the
           row count says how many were new;
- state:   INSERT ... ON CONFLICT (pair, key) DO UPDATE ... WHERE the stored precedence is
           lower; the newest result wins whatever order results arrive in.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, models, transaction

from replication.ingest.ordering import newest_per_object
from replication.ingest.schema import Event
from replication.models import BucketPair, CopyEvent, ObjectState


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def store_batch(events: Sequence[Event], received_at: datetime) -> BatchResult:
    """Store the events whose bucket pair is registered; report the others as rejected."""
    result = BatchResult()
    pairs = _pairs_for(events)
    matched: list[tuple[int, Event]] = []
    for index, event in enumerate(events):
        pair = match_pair(pairs, event)
        if pair is None:
            result.rejected.append({"index": index, "reason": _unregistered_reason(event)})
        else:
            matched.append((pair.pk, event))
    if not matched:
        return result

    # Rows in one order for every request: two batches touching the same rows then wait for
    # each other in the same order and cannot deadlock.
    matched.sort(key=lambda m: (m[0], m[1].key, m[1].precedence, m[1].event_name, m[1].status))
    newest = newest_per_object(((pair_id, event.key), event) for pair_id, event in matched)
    with transaction.atomic():
        inserted = _insert(
            [_event_row(pair_id, event, received_at) for pair_id, event in matched],
            on_conflict="ON CONFLICT DO NOTHING",
        )
        _insert(
            [_state_row(pair_id, event, received_at) for (pair_id, _key), event in newest.items()],
            on_conflict=_STATE_UPSERT,
        )
    result.accepted = inserted
    result.duplicates = len(matched) - inserted
    return result


def match_pair(pairs: Iterable[BucketPair], event: Event) -> BucketPair | None:
    """The pair that backs up ``event``'s key: same buckets, longest source prefix that fits.

    Disabled pairs count too: their results are still the truth about their backups.
    """
    best = None
    for pair in pairs:
        if (
            pair.source_bucket == event.source_bucket
            and pair.backup_bucket == event.destination_bucket
            and event.key.startswith(pair.source_prefix)
            and (best is None or len(pair.source_prefix) > len(best.source_prefix))
        ):
            best = pair
    return best


def _pairs_for(events: Sequence[Event]) -> list[BucketPair]:
    sources = {event.source_bucket for event in events}
    if not sources:
        return []
    return list(
        BucketPair.objects.filter(source_bucket__in=sources).only(
            "pk", "source_bucket", "source_prefix", "backup_bucket"
        )
    )


def _unregistered_reason(event: Event) -> str:
    return (
        f"no registered pair backs up s3://{event.source_bucket}/{event.key} "
        f"to bucket {event.destination_bucket}"
    )


def _result_fields(pair_id: int, event: Event) -> dict:
    return {
        "pair_id": pair_id,
        "key": event.key,
        "version_id": event.version_id,
        "event_name": event.event_name,
        "event_time": event.event_time,
        "sequencer": event.sequencer,
        "sequencer_order": event.sequencer_order,
        "attempt": event.attempt,
        "size": event.size,
        "etag": event.etag,
        "status": event.status,
        "error_code": event.error_code,
        "error_message": event.error_message,
        "finished_at": event.finished_at,
    }


def _event_row(pair_id: int, event: Event, received_at: datetime) -> CopyEvent:
    return CopyEvent(
        **_result_fields(pair_id, event),
        started_at=event.started_at,
        lag=event.lag,
        request_id=event.request_id,
        received_at=received_at,
    )


def _state_row(pair_id: int, event: Event, received_at: datetime) -> ObjectState:
    return ObjectState(**_result_fields(pair_id, event), updated_at=received_at)


def _state_upsert() -> str:
    q = connection.ops.quote_name
    table = q(ObjectState._meta.db_table)
    updated = [
        q(f.column)
        for f in ObjectState._meta.concrete_fields
        if not f.primary_key and f.name not in ("pair", "key")
    ]
    assignments = ", ".join(f"{column} = EXCLUDED.{column}" for column in updated)
    order = [q("sequencer_order"), q("attempt"), q("finished_at")]  # as ordering.Precedence
    stored = ", ".join(f"{table}.{column}" for column in order)
    incoming = ", ".join(f"EXCLUDED.{column}" for column in order)
    return (
        f"ON CONFLICT ({q('pair_id')}, {q('key')}) DO UPDATE SET {assignments} "
        f"WHERE ({stored}) < ({incoming})"
    )


_STATE_UPSERT = _state_upsert()


def _insert(rows: list[models.Model], on_conflict: str) -> int:
    """INSERT ``rows`` (all of one model) with an ON CONFLICT clause; return rows written.

    Django's bulk_create can ignore conflicts but neither counts what it inserted nor updates
    conditionally, which are the two things ingest needs. PostgreSQL and SQLite share this
    syntax and both count only rows really inserted or updated.
    """
    if not rows:
        return 0
    meta = rows[0]._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    batch_size = connection.ops.bulk_batch_size(fields, rows) or len(rows)
    written = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            values = ", ".join([one_row] * len(chunk))
            # Identifiers come from model metadata; every value is a parameter.
            sql = f"INSERT INTO {table} ({columns}) VALUES {values} {on_conflict}"  # noqa: S608
            params = [
                f.get_db_prep_save(getattr(row, f.attname), connection)
                for row in chunk
                for f in fields
            ]
            cursor.execute(sql, params)
            written += cursor.rowcount
    return written

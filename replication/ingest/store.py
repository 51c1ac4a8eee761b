"""Storing a validated batch of copy results (the ORM edge of the ingest API).

One batch, one transaction: every event row and every current-state change of a batch is
committed together or not at all, so a sender that sees an error can simply send again. On
PostgreSQL that is one statement, which the batches posted at once to one process share
(group commit, grouping.py), each told only about its own events.
Both writes let the database settle races, with no read-then-write:

- events:  INSERT ... ON CONFLICT DO NOTHING; the unique constraint drops repeats, and the
           row count says how many were new;
- state:   INSERT ... ON CONFLICT (pair, key) DO UPDATE ... WHERE the stored precedence is
           lower; the newest result wins whatever order results arrive in;
- totals:  the new events (only those really inserted) and the request itself are added to
           the running totals /metrics reports and to the hourly lag histograms the charts
           read (replication/ingest/tallies.py), and the copies to the per-day freshness
           counts (replication/evidence/counting.py), in the same transaction, so a counted
           event is a stored event.
"""

import functools
import json
from collections.abc import Iterable, Sequence, Set
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from django.db import IntegrityError, ProgrammingError, connection, models, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from replication.evidence.counting import add_freshness, freshness_tally_cte
from replication.ingest.cache import ExpiringCache
from replication.ingest.grouping import GroupCommit
from replication.ingest.ordering import Precedence, newest_per_object
from replication.ingest.schema import Event
from replication.ingest.tallies import (
    OUT_OF_SCOPE,
    UNREGISTERED_PAIR,
    RequestCounts,
    add_copies,
    add_hourly,
    add_requests,
    copy_tally_cte,
    copy_tally_rows,
    hourly_tally_cte,
    hourly_tally_rows,
    ingest_tally_cte,
)
from replication.models import BucketPair, CopyEvent, ObjectState
from replication.protection import counting as guard
from replication.rows import insert_rows

# How long a process may match events against a pair list it read earlier. A new pair is
# seen at once (an event matching no pair makes the list be read again); an edited or
# deleted one within this many seconds.
PAIR_CACHE_SECONDS = 5


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def store_batch(
    events: Sequence[Event],
    received_at: datetime,
    *,
    allowed_pair_ids: Set[int] | None = None,
    counts: RequestCounts | None = None,
) -> BatchResult:
    """Store the events whose bucket pair is registered; report the others as rejected.

    ``allowed_pair_ids`` is the sending key's scope (None: every pair); an event for a pair
    outside it is rejected, never stored. ``counts``, the request's own contribution to the
    ingest totals, is stored with the events (plus one rejection per rejected event).
    """
    result = BatchResult()
    counts = counts or RequestCounts()
    matched: list[tuple[int, Event]] = []
    for index, (event, pair) in enumerate(zip(events, _match_pairs(events), strict=True)):
        if pair is None:
            result.rejected.append({"index": index, "reason": _unregistered_reason(event)})
            counts.rejections[UNREGISTERED_PAIR] += 1
        elif allowed_pair_ids is not None and pair.pk not in allowed_pair_ids:
            result.rejected.append({"index": index, "reason": _out_of_scope_reason(event)})
            counts.rejections[OUT_OF_SCOPE] += 1
        else:
            matched.append((pair.pk, event))
    if not matched:
        add_requests(counts)
        return result

    try:
        if _joins_a_group(len(matched)):
            # Joined with the small posts other threads of this process make meanwhile.
            inserted = _groups.submit(_Post(matched, received_at, counts))
        else:
            inserted = len(_insert_batch(_rows(_Post(matched, received_at, counts)), counts))
    except IntegrityError:
        # Most likely a pair deleted since it was cached: the sender's retry must not meet it.
        _pairs.clear()
        raise
    result.accepted = inserted
    result.duplicates = len(matched) - inserted
    return result


@dataclass
class _Post:
    """A post's events matched to their pairs, on their way to the database."""

    matched: list[tuple[int, Event]]
    received_at: datetime
    counts: RequestCounts


@dataclass(slots=True)
class _Row:
    pair_id: int
    event: Event
    received_at: datetime

    @property
    def precedence(self) -> Precedence:
        return self.event.precedence


def _rows(*posts: _Post) -> list[_Row]:
    # Rows in one order for every statement: two statements touching the same rows then wait
    # for each other in the same order and cannot deadlock.
    rows = [_Row(pair_id, event, p.received_at) for p in posts for pair_id, event in p.matched]
    rows.sort(
        key=lambda r: (r.pair_id, r.event.key, r.precedence, r.event.event_name, r.event.status)
    )
    return rows


def _store_together(posts: Sequence[_Post]) -> list[int]:
    """PostgreSQL: store several posts in one statement; return each post's new events."""
    inserted = set(_insert_batch(_rows(*posts), RequestCounts.summed(p.counts for p in posts)))
    accepted = []
    for post in posts:
        new = 0
        for pair_id, event in post.matched:
            unique = (
                pair_id,
                event.key,
                event.sequencer_order,
                event.event_name,
                event.status,
                event.attempt,
            )
            if unique in inserted:  # an event in two posts of a group is new for the first
                inserted.remove(unique)
                new += 1
        accepted.append(new)
    return accepted


# The threads of a process that post at once share a statement (grouping.py). A thread waits
# at most this long for its group, then stores its post alone.
GROUP_WAIT_SECONDS = 1.0
# Only posts this small join: a commit is most of a one-event post's cost, little of a
# 100-event post's, which would only queue behind each other (7% fewer events/s, measured).
GROUP_MAX_EVENTS = 10
_groups: GroupCommit[_Post, int] = GroupCommit(_store_together, wait_seconds=GROUP_WAIT_SECONDS)


def _joins_a_group(events: int) -> bool:
    # Never inside a caller's transaction (its statements must stay in it), nor on SQLite.
    return (
        events <= GROUP_MAX_EVENTS
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    )


def _insert_batch(rows: list[_Row], counts: RequestCounts) -> list[tuple]:
    """Insert the events, advance the objects' state and the totals, all or nothing; return
    the unique key of each row new: (pair_id, key, sequencer_order, event_name, status,
    attempt), as ``event_unique_result``."""
    event_rows = [_event_row(r.pair_id, r.event, r.received_at) for r in rows]
    newest = newest_per_object(((r.pair_id, r.event.key), r) for r in rows)
    state_rows = [_state_row(r.pair_id, r.event, r.received_at) for r in newest.values()]
    if connection.vendor == "postgresql":
        # Every write in one statement, atomic on its own: one round trip instead of six
        # (BEGIN, four INSERTs, COMMIT), which is most of the cost of a one-event post.
        sql = _postgresql_batch(_STATE_UPSERT)
        params = [
            _as_json(CopyEvent, event_rows),
            _as_json(ObjectState, state_rows),
            json.dumps(counts.rows()),
        ]
        return _run_prepared(sql, params)
    with transaction.atomic():
        new = _insert_values(CopyEvent, event_rows, f"ON CONFLICT DO NOTHING {_RETURNING}")
        guarded = [
            (pair_id, key, name, status, etag, code, message, _sqlite_datetime(finished_at))
            for pair_id, status, _, finished_at, key, name, etag, code, message, *_ in new
        ]
        received_at = rows[0].received_at  # one post: groups are PostgreSQL's
        before = guard.old_states(guarded)  # the guard compares with the state before this batch
        _insert_values(ObjectState, state_rows, _STATE_UPSERT)
        restored = guard.restore_writes(guarded, before)  # a restore's own writes are not counted
        guard.add_guard_tallies(guard.guard_tally_rows(guarded, before, received_at, restored))
        results = [
            (pair_id, status, timedelta(microseconds=lag), _sqlite_datetime(finished_at))
            for pair_id, status, lag, finished_at, *_ in new
        ]
        add_copies(copy_tally_rows(r[:3] for r in results))
        add_hourly(hourly_tally_rows(results))
        add_freshness(results)
        add_requests(counts)
    return [
        (pair_id, key, order, name, status, attempt)
        for pair_id, status, _, _, key, name, _, _, _, order, attempt in new
    ]


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


# Pairs change rarely and every post needs them: each process holds them a few seconds.
_pairs: ExpiringCache[list[BucketPair]] = ExpiringCache(seconds=PAIR_CACHE_SECONDS)


def _load_pairs() -> list[BucketPair]:
    return list(BucketPair.objects.only("pk", "source_bucket", "source_prefix", "backup_bucket"))


def _match_pairs(events: Sequence[Event]) -> list[BucketPair | None]:
    pairs = _pairs.get("all", _load_pairs) or []
    matches = [match_pair(pairs, event) for event in events]
    if None in matches:
        # A pair registered since the cache was filled must not see its first events
        # rejected: look again before turning anything away.
        _pairs.clear()
        pairs = _pairs.get("all", _load_pairs) or []
        matches = [match_pair(pairs, event) for event in events]
    return matches


@receiver([post_save, post_delete], sender=BucketPair)
def _forget_pairs(**kwargs) -> None:
    _pairs.clear()


def _unregistered_reason(event: Event) -> str:
    return (
        f"no registered pair backs up s3://{event.source_bucket}/{event.key} "
        f"to bucket {event.destination_bucket}"
    )


def _out_of_scope_reason(event: Event) -> str:
    return (
        f"this ingest key may not report for the pair that backs up "
        f"s3://{event.source_bucket}/{event.key}"
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


def _event_row(pair_id: int, event: Event, received_at: datetime) -> dict:
    return {
        **_result_fields(pair_id, event),
        "started_at": event.started_at,
        "lag": event.lag,
        "request_id": event.request_id,
        "received_at": received_at,
    }


def _state_row(pair_id: int, event: Event, received_at: datetime) -> dict:
    return {**_result_fields(pair_id, event), "updated_at": received_at, **_NO_FINDING}


# The columns an event sets on an object's state; the finding columns belong to reconcile.
_STATE_EVENT_FIELDS = [
    "version_id",
    "event_name",
    "event_time",
    "sequencer",
    "sequencer_order",
    "attempt",
    "size",
    "etag",
    "status",
    "error_code",
    "error_message",
    "finished_at",
    "updated_at",
]
# A state row that ingest inserts carries no finding.
_NO_FINDING = {
    "finding": "",
    "finding_run_id": None,
    "finding_at": None,
    "source_modified_at": None,
    "lacking_since": None,
    "kept_etag": "",
    "kept_at": None,
}


def _state_upsert() -> str:
    q = connection.ops.quote_name
    table = q(ObjectState._meta.db_table)
    # Only the event's columns: a reconcile's finding stays, and ``finding_at`` against
    # ``event_time`` says which of the two is newer (see ObjectState).
    updated = [q(ObjectState._meta.get_field(name).column) for name in _STATE_EVENT_FIELDS]
    assignments = ", ".join(f"{column} = EXCLUDED.{column}" for column in updated)
    order = [q("sequencer_order"), q("finished_at"), q("attempt")]  # as ordering.Precedence
    stored = ", ".join(f"{table}.{column}" for column in order)
    incoming = ", ".join(f"EXCLUDED.{column}" for column in order)
    # A row with no event yet (only a finding) takes any event.
    return (
        f"ON CONFLICT ({q('pair_id')}, {q('key')}) DO UPDATE SET {assignments} "
        f"WHERE {table}.{q('sequencer_order')} IS NULL OR ({stored}) < ({incoming})"
    )


_STATE_UPSERT = _state_upsert()
# What the totals need of each event really inserted; from key on, what the guard needs.
# Then the rest of the unique key, for telling each post of a group what was new.
_RETURNING = (
    "RETURNING pair_id, status, lag, finished_at, key, event_name, etag, error_code, "
    "error_message, sequencer_order, attempt"
)


@functools.cache
def _postgresql_batch(state_upsert: str) -> str:
    # The events CTE returns only rows really inserted, so repeats are never counted twice.
    events_sql = _insert_from_json(CopyEvent, f"ON CONFLICT DO NOTHING {_RETURNING}")
    state_sql = _insert_from_json(ObjectState, state_upsert)
    return (
        f"WITH new_events AS ({events_sql}), new_state AS ({state_sql}), "  # noqa: S608
        f"new_copies AS ({copy_tally_cte('new_events')}), "
        f"new_hours AS ({hourly_tally_cte('new_events')}), "
        f"new_freshness AS ({freshness_tally_cte('new_events')}), "
        f"new_requests AS ({ingest_tally_cte()}), "
        f"new_guard AS ({guard.guard_tally_cte('new_events')}) "
        "SELECT pair_id, key, sequencer_order, event_name, status, attempt FROM new_events"
    )


# Parsing and planning the statement cost PostgreSQL more than running it for a one-event
# post (1.7 of 3.1 ms of its CPU, measured): each connection prepares it once and executes
# it by name thereafter. psycopg prepares it and binds the parameters (server-side, sent
# as they are): Django's cursors bind on the client, quoting every parameter in Python
# into an EXECUTE statement the server then parses again.
_NO_SUCH_STATEMENT = "26000"  # SQLSTATE invalid_sql_statement_name
# Django turns psycopg's preparing off (prepare_threshold None); ingest turns it on for its
# connections, for the statements that ask (prepare=True) and no others.
_ONLY_WHEN_ASKED = 2**62


def _run_prepared(sql: str, params: list) -> list[tuple]:
    """PostgreSQL: run ``sql`` (``%s`` placeholders) with ``params`` as a statement prepared
    on this connection; return its rows."""
    try:
        return _execute_prepared(sql, params)
    except ProgrammingError as error:
        if getattr(error.__cause__, "sqlstate", None) != _NO_SUCH_STATEMENT:
            raise
        # The server forgot it (DEALLOCATE, DISCARD ALL, a pooler's reset) and nothing ran.
        # psycopg forgets its own statements when it sees this command go by, so the retry
        # prepares it again.
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        return _execute_prepared(sql, params)


def _execute_prepared(sql: str, params: list) -> list[tuple]:
    # Inside a caller's transaction, a savepoint, so that a failure here leaves the caller's
    # transaction usable.
    with _savepoint_if_in_transaction(), connection.wrap_database_errors:
        connection.ensure_connection()
        raw = connection.connection
        if raw.prepare_threshold is None:
            raw.prepare_threshold = _ONLY_WHEN_ASKED
        with psycopg.RawCursor(raw) as cursor:
            cursor.execute(_numbered(sql, len(params)), params, prepare=True)
            return cursor.fetchall()


@functools.cache
def _numbered(sql: str, count: int) -> str:
    """``sql`` with PostgreSQL's own placeholders ($1, $2...) for psycopg's raw cursor: the
    ordinary cursor rewrites ``%s`` on every execution, by a regular expression over the
    whole text once a statement is longer than its cache takes (4,096 characters; ingest's
    is 6,800)."""
    return sql % tuple(f"${n}" for n in range(1, count + 1))


def _savepoint_if_in_transaction() -> AbstractContextManager:
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


# Django's bulk_create can ignore conflicts but neither counts what it inserted nor updates
# conditionally, which are the two things ingest needs; hence these few lines of SQL. Table
# and column names come from model metadata; every value is a parameter.


@functools.cache  # a model's columns never change while the process runs; asked on every post
def _columns(model: type[models.Model]) -> tuple[models.Field, ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


@functools.cache
def _json_names(model: type[models.Model]) -> tuple[tuple[str, str], ...]:
    """(column, attribute) per column: a row's values are read by attribute, sent by column."""
    return tuple((f.column, f.attname) for f in _columns(model))


def _insert_from_json(model: type[models.Model], on_conflict: str) -> str:
    """PostgreSQL: INSERT the rows of one JSON parameter, expanded as rows of the table's type.

    One short statement whatever the batch size, and no per-value quoting in Python (a
    1,600-placeholder VALUES list cost more than the insert itself).
    """
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in _columns(model))
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} "  # noqa: S608
        f"FROM json_populate_recordset(NULL::{table}, %s) {on_conflict}"
    )


def _as_json(model: type[models.Model], rows: list[dict]) -> str:
    names = _json_names(model)
    return json.dumps(
        [{column: row[attname] for column, attname in names} for row in rows],
        default=_json_value,
    )


def _insert_values(model: type[models.Model], rows: list[dict], on_conflict: str) -> list:
    """Elsewhere (SQLite): INSERT ... VALUES in chunks; return the rows written, as the
    RETURNING clause in ``on_conflict`` gives them (empty tuples without one)."""
    fields = _columns(model)
    prepared = [[f.get_db_prep_save(row[f.attname], connection) for f in fields] for row in rows]
    return insert_rows(model, fields, prepared, on_conflict)


def _sqlite_datetime(value: str | datetime) -> datetime:
    """A RETURNING clause hands SQLite's stored text back unconverted."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _json_value(value: datetime | timedelta) -> str:
    """Datetimes and durations in forms PostgreSQL reads back exactly (to the microsecond)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value // timedelta(microseconds=1)} microseconds"
    raise TypeError(f"cannot send {type(value).__name__} as JSON")

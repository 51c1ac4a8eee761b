"""What ingest counts for the destructive-change guard, per pair and minute of finished_at.

Destructive: a delete (an ``ObjectRemoved`` event, applied or not), or an overwrite: a copy
of a key whose known state is a copy of other content (by ETag). Also counted: copies S3
refused because the source object is encrypted with a customer-provided key (SSE-C), as
the 2025 ransomware campaign left them. Events that finished more than five minutes before
they arrived are not counted: a backlog delivered late is not a burst. Nor is a restore's
own write copied back into the backup (its key with the ETag the restore wrote,
replication/restore/writes.py): it is the recovery from a burst, not another one.

On PostgreSQL the rows are added by a CTE of ingest's one statement (guard_tally_cte), which
compares with the object's state as it was before that statement; elsewhere, by
guard_tally_rows and add_guard_tallies in ingest's transaction.
"""

from collections.abc import Iterable, Set
from datetime import UTC, datetime, timedelta

from django.db import connection

from replication.models import GuardTally, ObjectState
from replication.restore import writes
from replication.rows import insert_rows

WINDOW = timedelta(minutes=5)
# How far in the future a finished_at may be and still count (clocks disagree a little).
SKEW = timedelta(minutes=1)
# S3's answer to a copy of an SSE-C object without its key: 400 InvalidRequest, and this.
SSE_C_MESSAGE = "stored using a form of Server Side Encryption"
_SHARDS = 8  # as the ingest totals (replication.models.tallies.SHARDS)


def is_destructive(event_name: str, status: str, etag: str, old_status: str, old_etag: str) -> bool:
    if event_name.startswith("ObjectRemoved"):
        return True
    return (
        status == "copied"
        and old_status == "copied"
        and bool(etag and old_etag)
        and etag != old_etag
    )


def is_encrypted_refusal(status: str, error_code: str, error_message: str) -> bool:
    return (
        status == "failed"
        and error_code == "InvalidRequest"
        and SSE_C_MESSAGE in (error_message or "")
    )


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def guard_tally_rows(
    new: Iterable[tuple],
    old: dict[tuple[int, str], tuple[str, str]],
    now: datetime,
    restored: Set[tuple[int, str, str]] = frozenset(),
) -> list[tuple]:
    """(pair_id, minute, changes, encrypted_refusals) from the new events' (pair_id, key,
    event_name, status, etag, error_code, error_message, finished_at), the objects' state
    before them, {(pair_id, key): (status, etag)}, and the restores' own writes among them,
    {(pair_id, key, unquoted etag)} (pure; guard_tally_cte does the same)."""
    totals: dict[tuple[int, datetime], list[int]] = {}
    for pair_id, key, event_name, status, etag, code, message, finished_at in new:
        finished_at = _utc(finished_at)
        if not (now - WINDOW <= finished_at <= now + SKEW):
            continue
        old_status, old_etag = old.get((pair_id, key), ("", ""))
        destructive = is_destructive(event_name, status, etag or "", old_status, old_etag or "")
        destructive = destructive and (pair_id, key, writes.unquoted(etag)) not in restored
        refused = is_encrypted_refusal(status, code or "", message or "")
        if destructive or refused:
            total = totals.setdefault((pair_id, minute_of(finished_at)), [0, 0])
            total[0] += destructive
            total[1] += refused
    return [(*key, *counts) for key, counts in sorted(totals.items())]


def _utc(when: datetime) -> datetime:
    # SQLite's RETURNING: UTC without its zone.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def guard_tally_cte(new_events: str) -> str:
    """PostgreSQL: an INSERT adding the destructive changes among ``new_events`` (which
    returns pair_id, key, event_name, status, etag, error_code, error_message, finished_at)
    to GuardTally. Its read of the state table sees it as before the statement, and happens
    only for copies (CASE keeps the order): deletes and failures need no lookup."""
    table = _q(GuardTally._meta.db_table)
    state = _q(ObjectState._meta.db_table)
    overwrite = (
        f"EXISTS (SELECT 1 FROM {state} s WHERE s.pair_id = e.pair_id AND s.key = e.key "  # noqa: S608
        "AND s.status = 'copied' AND s.etag <> '' AND s.etag <> e.etag)"
    )
    # Nested CASEs keep the order: only an overwrite looks for a restore's own write.
    destructive = (
        "CASE WHEN e.event_name LIKE 'ObjectRemoved%%' THEN true "
        f"WHEN e.status = 'copied' AND e.etag <> '' THEN "
        f"CASE WHEN {overwrite} THEN NOT {writes.written_sql('e')} ELSE false END "
        "ELSE false END"
    )
    refused = (
        "(e.status = 'failed' AND e.error_code = 'InvalidRequest' "
        f"AND strpos(e.error_message, '{SSE_C_MESSAGE}') > 0)"
    )
    return (
        f"INSERT INTO {table} (pair_id, minute, shard, changes, encrypted_refusals) "  # noqa: S608
        f"SELECT pair_id, minute, mod(pg_backend_pid(), {_SHARDS}), "
        "count(*) FILTER (WHERE destructive), count(*) FILTER (WHERE refused) FROM ("
        f"SELECT e.pair_id, date_trunc('minute', e.finished_at) AS minute, "
        f"{destructive} AS destructive, {refused} AS refused FROM {new_events} e "
        "WHERE e.finished_at BETWEEN now() - interval '5 minutes' AND now() + interval '1 minute'"
        ") c WHERE destructive OR refused GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        "ON CONFLICT (pair_id, minute, shard) DO UPDATE SET "
        f"changes = {table}.changes + EXCLUDED.changes, "
        f"encrypted_refusals = {table}.encrypted_refusals + EXCLUDED.encrypted_refusals"
    )


def old_states(new: Iterable[tuple]) -> dict[tuple[int, str], tuple[str, str]]:
    """Elsewhere (SQLite): the stored state of the new events' objects, read before the upsert."""
    wanted: dict[int, set[str]] = {}
    for row in new:
        wanted.setdefault(row[0], set()).add(row[1])
    found = {}
    for pair_id, keys in wanted.items():
        rows = ObjectState.objects.filter(pair_id=pair_id, key__in=keys).values_list(
            "key", "status", "etag"
        )
        found.update({(pair_id, key): (status, etag) for key, status, etag in rows})
    return found


def restore_writes(
    new: Iterable[tuple], old: dict[tuple[int, str], tuple[str, str]]
) -> set[tuple[int, str, str]]:
    """Elsewhere (SQLite): the overwrites among the new events that are a restore's own
    writes, as {(pair_id, key, unquoted etag)}; guard_tally_rows leaves them out. No query
    without an overwrite."""
    copies: dict[int, list[tuple]] = {}
    for pair_id, key, event_name, status, etag, _, _, finished_at in new:
        old_status, old_etag = old.get((pair_id, key), ("", ""))
        if is_destructive(event_name, status, etag or "", old_status, old_etag or "") and etag:
            copies.setdefault(pair_id, []).append((key, writes.unquoted(etag), finished_at))
    found = set()
    for pair_id, events in copies.items():
        windows = writes.written(pair_id, {key for key, _, _ in events})
        found.update(
            (pair_id, key, etag)
            for key, etag, finished_at in events
            if writes.within(windows.get((key, etag), ()), _utc(finished_at))
        )
    return found


def add_guard_tallies(rows: list[tuple]) -> None:
    """Elsewhere (SQLite): add guard_tally_rows' rows to GuardTally, shard 0."""
    if not rows:
        return
    table = _q(GuardTally._meta.db_table)
    fields = [
        GuardTally._meta.get_field(name)
        for name in ("pair", "minute", "shard", "changes", "encrypted_refusals")
    ]
    prepared = [
        [
            f.get_db_prep_save(value, connection)
            for f, value in zip(fields, (p, m, 0, c, r), strict=True)
        ]
        for p, m, c, r in rows
    ]
    insert_rows(
        GuardTally,
        fields,
        prepared,
        "ON CONFLICT (pair_id, minute, shard) DO UPDATE SET "
        f"changes = {table}.changes + EXCLUDED.changes, "
        f"encrypted_refusals = {table}.encrypted_refusals + EXCLUDED.encrypted_refusals",
    )

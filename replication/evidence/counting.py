"""Freshness counted at ingest (the ORM edge of evidence), as replication/ingest/tallies.py
counts its totals.

On PostgreSQL store.py's single statement carries freshness_tally_cte: the copies really
inserted, grouped by pair and UTC day, compared with the pair's lag objective read in that
same statement (so each copy counts against the objective in force when it was stored).
Elsewhere (SQLite) add_freshness does the same in the batch's transaction.
"""

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from django.db import connection

from replication.evidence.freshness import MONTHS_KEPT, months_back, utc_day
from replication.models import BucketPair, CopyEvent, CopyStatus, FreshnessTally
from replication.models.tallies import SHARDS

_COPIED = CopyStatus.COPIED.value


def freshness_rows(
    results: Iterable[tuple[int, str, timedelta, datetime]], objectives: dict[int, int]
) -> list[tuple[int, date, int, int, int]]:
    """(pair_id, day, objective_seconds, copies, within) from new events' (pair_id, status,
    lag, finished_at) and the pairs' objectives in seconds, sorted (pure; the SQL in
    freshness_tally_cte does the same)."""
    copies: Counter = Counter()
    within: Counter = Counter()
    for pair_id, status, lag, finished_at in results:
        if status != _COPIED or pair_id not in objectives:
            # Not a copy; or a pair deleted since the batch matched it, whose events the
            # database refuses at commit (as the SQL's join drops them).
            continue
        objective = objectives[pair_id]
        key = (pair_id, utc_day(finished_at), objective)
        copies[key] += 1
        within[key] += lag <= timedelta(seconds=objective)
    return [(*key, copies[key], within[key]) for key in sorted(copies)]


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def freshness_tally_cte(new_events: str) -> str:
    """PostgreSQL: an INSERT adding the copies of CTE ``new_events`` (which returns pair_id,
    status, lag and finished_at) to FreshnessTally."""
    table = _q(FreshnessTally._meta.db_table)
    pairs = _q(BucketPair._meta.db_table)
    objective = "p.lag_objective_seconds"
    return (
        f"INSERT INTO {table} (pair_id, day, objective_seconds, shard, copies, within) "  # noqa: S608
        f"SELECT e.pair_id, (e.finished_at AT TIME ZONE 'UTC')::date, {objective}, "
        f"mod(pg_backend_pid(), {SHARDS}), count(*), "
        f"count(*) FILTER (WHERE e.lag <= make_interval(secs => {objective})) "
        f"FROM {new_events} AS e JOIN {pairs} AS p ON p.id = e.pair_id "
        f"WHERE e.status = '{_COPIED}' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        "ON CONFLICT (pair_id, day, objective_seconds, shard) DO UPDATE SET "
        f"copies = {table}.copies + EXCLUDED.copies, within = {table}.within + EXCLUDED.within"
    )


def add_freshness(results: list[tuple[int, str, timedelta, datetime]]) -> None:
    """Elsewhere (SQLite): count new events' (pair_id, status, lag, finished_at) into
    FreshnessTally, shard 0, against the pairs' objectives read now (inside the batch's
    transaction)."""
    pair_ids = {r[0] for r in results if r[1] == _COPIED}
    if not pair_ids:
        return
    objectives = dict(
        BucketPair.objects.filter(pk__in=pair_ids).values_list("pk", "lag_objective_seconds")
    )
    rows = freshness_rows(results, objectives)
    day_field = FreshnessTally._meta.get_field("day")
    table = _q(FreshnessTally._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (pair_id, day, objective_seconds, shard, copies, within) "  # noqa: S608
            "VALUES (%s, %s, %s, 0, %s, %s) "
            "ON CONFLICT (pair_id, day, objective_seconds, shard) DO UPDATE SET "
            f"copies = {table}.copies + excluded.copies, within = {table}.within + excluded.within",
            [(p, day_field.get_db_prep_save(d, connection), o, n, w) for p, d, o, n, w in rows],
        )


def rebuild_freshness(
    event_model=CopyEvent, tally_model=FreshnessTally, pair_model=BucketPair
) -> int:
    """Count every stored event into the freshness tallies from scratch, against each pair's
    present objective; return rows written.

    For the migration that introduced them (which passes its historical models) and for
    benchmarks that fill events by SQL. Pair by pair, so memory stays bounded.
    """
    tally_model.objects.all().delete()
    written = 0
    for pair_id, objective in pair_model.objects.values_list("pk", "lag_objective_seconds"):
        results = (
            event_model.objects.filter(pair_id=pair_id, status=_COPIED)
            .values_list("pair_id", "status", "lag", "finished_at")
            .order_by()
            .iterator(chunk_size=20_000)
        )
        rows = [
            tally_model(pair_id=p, day=d, objective_seconds=o, shard=0, copies=n, within=w)
            for p, d, o, n, w in freshness_rows(results, {pair_id: objective})
        ]
        tally_model.objects.bulk_create(rows, batch_size=5_000)
        written += len(rows)
    return written


def prune_freshness(now: datetime) -> int:
    """Delete the days of months older than the 13 a report can cover; return rows removed."""
    first_kept = months_back(now, MONTHS_KEPT)[0]
    deleted, _ = FreshnessTally.objects.filter(day__lt=first_kept).delete()
    return deleted


def fold_freshness_shards(now: datetime) -> int:
    """Fold the shards of days before yesterday into shard 0; return rows removed.

    PostgreSQL only (elsewhere ingest writes shard 0 alone). A late report after the fold
    starts a shard again, folded at the next run.
    """
    if connection.vendor != "postgresql":
        return 0
    before = utc_day(now) - timedelta(days=1)
    table = _q(FreshnessTally._meta.db_table)
    sql = (
        f"WITH folded AS (DELETE FROM {table} WHERE shard <> 0 AND day < %s "  # noqa: S608
        "RETURNING pair_id, day, objective_seconds, copies, within), "
        f"added AS (INSERT INTO {table} (pair_id, day, objective_seconds, shard, copies, within) "
        "SELECT pair_id, day, objective_seconds, 0, sum(copies), sum(within) FROM folded "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        "ON CONFLICT (pair_id, day, objective_seconds, shard) DO UPDATE SET "
        f"copies = {table}.copies + EXCLUDED.copies, within = {table}.within + EXCLUDED.within) "
        "SELECT count(*) FROM folded"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [before])
        return cursor.fetchone()[0]


def upkeep(now: datetime) -> int:
    """The hourly upkeep of the freshness tallies: fold closed days, drop what is too old."""
    return fold_freshness_shards(now) + prune_freshness(now)

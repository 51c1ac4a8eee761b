"""Server time of the dashboard's overview and of a pair page, on a big PostgreSQL database.

    .venv/bin/python bench/bench_dashboard.py [--pairs 50] [--events 2000000] [--days 30]
                                              [--requests 40] [--keep [--top-up N]]

What it does:
1. recreates a PostgreSQL database of its own (default ``bench_dashboard`` on 127.0.0.1,
   user postgres) and migrates it (``--keep`` reuses a database filled by an earlier run);
2. registers ``--pairs`` pairs and generates ``--events`` copy events spread evenly over the
   last ``--days`` days and over the pairs, inside PostgreSQL (INSERT ... SELECT from
   generate_series: no rows travel through Python), with lags of a few seconds and 0.5%
   failures; one object state per event's key; the hourly tallies and running totals
   ingest would have kept (counted in SQL), closed hours folded and rolled up as beat does;
   a reconcile run per pair per day, the last one out of sync on a few pairs; then VACUUM
   ANALYZE;
3. starts as a web worker does (imports backupsite/wsgi.py, which freezes what start-up
   loaded), logs a superuser in with Django's test Client (in this process: server time, no
   network) and times ``/`` and ``/pairs/<name>/?window=7d``, after two warm-up requests each;
4. prints p50/p95 in milliseconds and the number of SQL queries of each page.

Not a test: filling takes a few minutes and the figures are from a shared machine.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def psql(sql: str, host: str, user: str) -> None:
    subprocess.run(
        ["psql", "-h", host, "-U", user, "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


# Failures and slow copies go by an event's number within its pair (g / pairs), so that every
# pair gets its share whatever the number of pairs.
EVENTS_SQL = """
INSERT INTO replication_copyevent (
    pair_id, key, version_id, event_name, event_time, sequencer, sequencer_order, attempt,
    size, etag, status, error_code, error_message, finished_at, started_at, lag, request_id,
    received_at)
SELECT p.id,
       'data/' || g || '.bin', '', 'ObjectCreated:Put',
       e.finished_at - e.lag, lpad(to_hex(g), 18, '0'),
       upper(rpad(lpad(to_hex(g), 18, '0'), 32, '0')),
       1, 1024 + mod(g, 100000), '"' || md5(g::text) || '"',
       CASE WHEN mod(g / %(pairs)s, 200) = 0 THEN 'failed' ELSE 'copied' END,
       CASE WHEN mod(g / %(pairs)s, 200) = 0 THEN 'AccessDenied' ELSE '' END,
       CASE WHEN mod(g / %(pairs)s, 200) = 0 THEN 'Access Denied' ELSE '' END,
       e.finished_at, e.finished_at - e.lag / 2, e.lag, 'req-' || g, e.finished_at
FROM generate_series(%(first)s, %(first)s + %(events)s - 1) AS g
JOIN LATERAL (
    SELECT now() - make_interval(secs => %(span)s * ((g - %(first)s + 1)::double precision
                                                      / %(events)s))
               AS finished_at,
           make_interval(secs => 0.2 + mod(g, 97) * 0.08
                                 + CASE WHEN mod(g / %(pairs)s, 1000) = 0 THEN 600 ELSE 0 END)
               AS lag
) AS e ON true
JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM replication_bucketpair) AS p
  ON p.n = mod(g, %(pairs)s)
"""

STATES_SQL = """
INSERT INTO replication_objectstate (
    pair_id, key, version_id, event_name, event_time, sequencer, sequencer_order, attempt,
    size, etag, status, error_code, error_message, finished_at, updated_at, finding,
    finding_at, source_modified_at, lacking_since, finding_run_id, kept_etag)
SELECT pair_id, key, version_id, event_name, event_time, sequencer, sequencer_order, attempt,
       size, etag, status, error_code, error_message, finished_at, received_at, '',
       NULL, NULL, NULL, NULL, ''
FROM replication_copyevent
"""

RUNS_SQL = """
INSERT INTO replication_reconcilerun (
    pair_id, trigger, repair, status, verdict, celery_task_id, created_at, started_at,
    finished_at, heartbeat_at, error, objects_scanned, source_objects, destination_objects,
    source_bytes, destination_bytes, in_sync, missing, extra, mismatched, unverified,
    in_flight, checksum_settled, repaired, repair_failed, discrepancies_stored, ranges_total,
    ranges_done, range_boundaries, requested_by_id, repair_total, repaired_missing,
    repaired_mismatched, extras_deleted, settled_in_sync, settled_missing, kept)
SELECT p.id, 'scheduled', false, 'succeeded',
       CASE WHEN d = 0 AND mod(p.id, 10) = 0 THEN 'out_of_sync' ELSE 'in_sync' END, '',
       now() - make_interval(days => d), now() - make_interval(days => d),
       now() - make_interval(days => d) + interval '40 seconds', now() - make_interval(days => d),
       '', 80000, 40000, 40000, 0, 0, 40000,
       CASE WHEN d = 0 AND mod(p.id, 10) = 0 THEN 12 ELSE 0 END, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
       '[]', NULL, 0, 0, 0, 0, 0, 0, 0
FROM replication_bucketpair AS p, generate_series(0, %(days)s - 1) AS d
"""


def tally_sqls(after_id: int = 0) -> list[tuple[str, str]]:
    """The totals ingest keeps as it stores events (hourly lag histograms for the charts,
    running totals for /metrics), counted in SQL from the events after ``after_id`` and
    added to what is there.

    Spread over the shards as a site's web processes spread them (each connection writes
    to its own): the running totals, and the current hour, which is not folded yet. Closed
    hours go to shard 0, since the fold that follows leaves one row for them whatever the
    shard."""
    from replication.dashboard import histogram
    from replication.models.tallies import SHARDS
    from replication.monitoring.lag import bucket_index_sql

    seconds = "EXTRACT(EPOCH FROM lag)::double precision"
    current_hour = "date_bin('1 hour', now(), 'epoch'::timestamptz)"
    shard = f"mod(abs(hashint8(id)), {SHARDS})"
    hourly = (
        "INSERT INTO replication_hourlytally (pair_id, hour, status, lag_bucket, shard, copies) "  # noqa: S608 (our own figures)
        "SELECT pair_id, date_bin('1 hour', finished_at, 'epoch'::timestamptz), status, "
        f"{histogram.bucket_index_sql(seconds)}, "
        f"CASE WHEN finished_at >= {current_hour} THEN {shard} ELSE 0 END, "
        f"count(*) FROM replication_copyevent WHERE id > {int(after_id)} GROUP BY 1, 2, 3, 4, 5 "
        "ON CONFLICT (pair_id, hour, status, lag_bucket, shard) DO UPDATE SET "
        "copies = replication_hourlytally.copies + EXCLUDED.copies"
    )
    totals = (
        "INSERT INTO replication_copytally (pair_id, status, lag_bucket, shard, copies, "  # noqa: S608 (our own figures)
        f"lag_seconds_sum) SELECT pair_id, status, {bucket_index_sql(seconds)}, "
        f"{shard}, count(*), sum({seconds}) FROM replication_copyevent "
        f"WHERE id > {int(after_id)} GROUP BY 1, 2, 3, 4 "
        "ON CONFLICT (pair_id, status, lag_bucket, shard) DO UPDATE SET "
        "copies = replication_copytally.copies + EXCLUDED.copies, "
        "lag_seconds_sum = replication_copytally.lag_seconds_sum + EXCLUDED.lag_seconds_sum"
    )
    return [("hourly tallies", hourly), ("copy totals", totals)]


# The big tables' secondary indexes and unique constraints are built once their rows are in:
# one sort per index instead of twenty million insertions into each (fills ten times faster).
BIG_TABLES = ("replication_copyevent", "replication_objectstate")

SECONDARY_SQL = """
SELECT c.relname, i.relname, pg_get_indexdef(i.oid), con.conname, pg_get_constraintdef(con.oid)
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.contype = 'u'
WHERE c.relname = ANY(%s) AND NOT x.indisprimary
"""


@contextmanager
def indexes_built_after(cursor):
    """Drop the big tables' secondary indexes, run the body, then build them again."""
    cursor.execute(SECONDARY_SQL, [list(BIG_TABLES)])
    secondary = cursor.fetchall()
    for table, index, _, constraint, _ in secondary:
        if constraint:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
        else:
            cursor.execute(f'DROP INDEX "{index}"')
    yield
    cursor.execute("SET maintenance_work_mem = '512MB'")
    for table, index, definition, constraint, constraint_definition in secondary:
        step = time.perf_counter()
        if constraint:
            cursor.execute(
                f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {constraint_definition}'
            )
        else:
            cursor.execute(definition)
        print(f"  index {index}: {time.perf_counter() - step:.0f} s", flush=True)


def fill(pairs: int, events: int, days: int) -> None:
    from django.db import connection

    from replication.models import BucketPair

    started = time.perf_counter()
    BucketPair.objects.bulk_create(
        BucketPair(
            name=f"pair-{i:02d}",
            source_bucket=f"source-{i:02d}",
            backup_bucket=f"backup-{i:02d}",
            reconcile_every_minutes=1440,
        )
        for i in range(pairs)
    )
    params = {"events": events, "pairs": pairs, "span": days * 86_400, "days": days, "first": 1}
    with connection.cursor() as cursor:
        steps = [("events", EVENTS_SQL), ("states", STATES_SQL), ("runs", RUNS_SQL)]
        # The rows are made from the pairs just created, so their foreign keys hold by
        # construction; checking each of forty million rows by trigger took most of the fill.
        cursor.execute("SET session_replication_role = replica")
        with indexes_built_after(cursor):
            for label, sql in steps:
                step = time.perf_counter()
                cursor.execute(sql, params)
                elapsed = time.perf_counter() - step
                print(f"  {label}: {cursor.rowcount:,} rows in {elapsed:.0f} s", flush=True)
        cursor.execute("SET session_replication_role = DEFAULT")
        # Ingest would have counted these events into its totals as it stored them.
        for label, sql in tally_sqls():
            step = time.perf_counter()
            cursor.execute(sql)
            elapsed = time.perf_counter() - step
            print(f"  {label}: {cursor.rowcount:,} rows in {elapsed:.0f} s", flush=True)
        # As beat would have: closed hours folded and rolled up (replication/ingest/folding.py).
        from replication.ingest.folding import fold_closed_hours

        step = time.perf_counter()
        hours = fold_closed_hours()
        print(f"  folded {hours:,} closed hours in {time.perf_counter() - step:.0f} s", flush=True)
        # As a live database would be: statistics current and the visibility map set (index
        # only scans depend on it).
        cursor.execute("VACUUM ANALYZE")
    print(f"filled in {time.perf_counter() - started:.0f} s")


def top_up(per_hour: int) -> None:
    """Let the site go on receiving ``per_hour`` events an hour from its newest event (at
    most the last hour) to now, with the totals ingest would have kept: a database filled
    earlier then has a live last hour again, where health's exact lag percentiles and the
    hour not folded yet cost what they cost on a running site.

    The events are appended in the order a site receives them, by finish time: the last
    hour's rows then lie together at the end of the table, as they do on a site. (Events
    spread over an hour that already holds some would interleave with them, one table page
    per row, which no site's table does.)"""
    from django.db import connection

    from replication.models import BucketPair

    started = time.perf_counter()
    pairs = BucketPair.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(id), 0), "
            "extract(epoch FROM now() - greatest(max(finished_at), now() - interval '1 hour')) "
            "FROM replication_copyevent"
        )
        before, span = cursor.fetchone()
        span = float(span if span is not None else 3600)
        events = int(per_hour * span / 3600)
        if events:
            params = {"events": events, "pairs": pairs, "span": span, "first": before + 1}
            cursor.execute(EVENTS_SQL + " ORDER BY e.finished_at", params)
            for _, sql in tally_sqls(after_id=before):
                cursor.execute(sql)
            cursor.execute("ANALYZE replication_copyevent")
    from replication.ingest.folding import fold_closed_hours

    fold_closed_hours()  # as beat would have within five minutes
    elapsed = time.perf_counter() - started
    print(f"topped up: {events:,} events over the last {span:,.0f} s, in {elapsed:.0f} s")


def measure(client, url: str, requests: int) -> dict[str, float]:
    """p50/p95 of the whole request and of its SQL, in ms, and the queries per request."""
    from django.db import connection

    sql_ms: list[float] = []

    def timed(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_ms.append((time.perf_counter() - start) * 1000)

    for _ in range(2):
        assert client.get(url).status_code == 200, url
    totals, sqls, queries = [], [], 0
    with connection.execute_wrapper(timed):
        for _ in range(requests):
            sql_ms.clear()
            start = time.perf_counter()
            response = client.get(url)
            totals.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
            sqls.append(sum(sql_ms))
            queries = len(sql_ms)

    def p95(values):
        return statistics.quantiles(values, n=20, method="inclusive")[18]

    return {
        "p50": statistics.median(totals),
        "p95": p95(totals),
        "sql_p50": statistics.median(sqls),
        "sql_p95": p95(sqls),
        "queries": queries,
    }


def open_database(database: str, host: str, user: str, *, fresh: bool) -> None:
    """Point Django at the bench's own PostgreSQL database (dropped, recreated and migrated
    when ``fresh``) with production settings, and set Django up."""
    url = f"postgres://{user}@{host}:5432/{database}"
    os.environ.update(
        {"DATABASE_URL": url, "DEBUG": "false", "ALLOWED_HOSTS": "testserver", "LOG_LEVEL": "ERROR"}
    )
    os.environ.pop("REDIS_URL", None)
    # Connections are kept between requests, as a deployment does (DATABASE_CONN_MAX_AGE).
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "60")
    if fresh:
        psql(f'DROP DATABASE IF EXISTS "{database}"', host, user)
        psql(f'CREATE DATABASE "{database}"', host, user)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=os.environ,
            check=True,
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--database", default="bench_dashboard")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--keep", action="store_true", help="reuse a database already filled")
    parser.add_argument(
        "--top-up",
        type=int,
        default=0,
        metavar="N",
        help="with --keep: first let the site receive N events an hour from its newest "
        "event to now (at most the last hour): a filled database ages",
    )
    args = parser.parse_args()

    open_database(args.database, args.host, args.user, fresh=not args.keep)
    from django.contrib.auth.models import User
    from django.test import Client

    if not args.keep:
        print(f"filling: {args.pairs} pairs, {args.events:,} events over {args.days} days")
        fill(args.pairs, args.events, args.days)
    elif args.top_up:
        top_up(args.top_up)
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    import backupsite.wsgi  # noqa: F401  (start as a web worker does: it freezes start-up)

    client = Client()
    client.force_login(user)
    print(f"{args.requests} requests each (after 2 warm-up), server time in ms:")
    pair = f"pair-{min(7, args.pairs - 1):02d}"
    for label, page in (("/", "/"), ("pair, 7 d", f"/pairs/{pair}/?window=7d")):
        m = measure(client, page, args.requests)
        print(
            f"  {label:<10} p50 {m['p50']:6.1f}  p95 {m['p95']:6.1f}   of which SQL: "
            f"p50 {m['sql_p50']:6.1f}  p95 {m['sql_p95']:6.1f}  ({m['queries']} queries)"
        )


if __name__ == "__main__":
    main()

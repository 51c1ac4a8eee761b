"""Time of one /metrics scrape with 50 pairs and 2,000,000 events, on PostgreSQL.

    .venv/bin/python bench/bench_metrics.py [--pairs 50] [--events 2000000] [--scrapes 30]

What it does:
1. recreates a PostgreSQL database of its own (default ``bench_metrics`` on 127.0.0.1, user
   postgres) and migrates it;
2. fills it in SQL, server side (INSERT ... SELECT over generate_series, no rows through
   Python): the pairs; the events spread over 30 days (1% failed, 2% deleted, 1% skipped,
   lags mostly seconds, a few up to an hour); one current-state row per object, 0.1% of them
   found missing by a reconcile; a reconcile a day per pair; the running totals ingest would
   have kept, in all 8 shards;
3. starts as a web worker does (imports backupsite/wsgi.py, which freezes what start-up
   loaded) and scrapes /metrics through Django's test Client in this process (server time
   only, no network), once to warm up and then ``--scrapes`` times, and prints p50/p95/max,
   the number of queries and series.

Not a test: it measures a shared machine. Target: p95 under 200 ms.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def psql(sql: str, host: str, user: str, database: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-h", host, "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
    )


def fill(pairs: int, events: int) -> None:
    from django.db import connection

    from replication.models.tallies import SHARDS
    from replication.monitoring.lag import bucket_index_sql

    seconds = "EXTRACT(EPOCH FROM lag)::double precision"
    steps = [
        (
            "pairs",
            "INSERT INTO replication_bucketpair (name, source_bucket, source_prefix, "  # noqa: S608 (our own figures)
            "backup_bucket, backup_prefix, region, enabled, grace_seconds, "
            "reconcile_every_minutes, lag_objective_seconds, mirror_deletes, badge_token, "
            "created_at, updated_at, freshness_target, protection_window_days, "
            "guard_min_changes, guard_factor, guard_usual, restore_drill_every_days, "
            "drill_max_bytes, drill_scratch) "
            "SELECT 'pair-' || p, 'src-' || p, '', 'bak-' || p, '', 'us-east-1', true, 900, "
            "1440, 900, false, md5(random()::text), now() - interval '31 days', now(), "
            "99.9, 30, 500, 10, 0, 7, 1073741824, '' "
            f"FROM generate_series(1, {pairs}) p",
        ),
        (
            "events",
            # Event i of pair (i % pairs): finished evenly over 30 days, newest last.
            "INSERT INTO replication_copyevent (pair_id, key, version_id, event_name, "  # noqa: S608 (our own figures)
            "event_time, sequencer, sequencer_order, attempt, size, etag, status, error_code, "
            "error_message, finished_at, started_at, lag, request_id, received_at) "
            "SELECT p.id, 'k/' || i, '', CASE WHEN s = 'deleted' THEN 'ObjectRemoved:Delete' "
            "ELSE 'ObjectCreated:Put' END, f - lag, upper(to_hex(i)), "
            "upper(lpad(to_hex(i), 32, '0')), 1, 4096, '\"etag\"', s, "
            "CASE WHEN s = 'failed' THEN 'AccessDenied' ELSE '' END, '', f, f - lag, lag, "
            "'r-' || i, f "
            "FROM (SELECT i, now() - (interval '30 days' * (1 - i::float8 / "
            f"{events})) AS f, "
            # Statuses and slow copies by the event's number within its pair (i / pairs),
            # so every pair gets its share, whatever the number of pairs.
            f"CASE WHEN (i / {pairs}) % 100 = 0 THEN 'failed' "
            f"WHEN (i / {pairs}) % 50 = 1 THEN 'deleted' "
            f"WHEN (i / {pairs}) % 100 = 2 THEN 'skipped' ELSE 'copied' END AS s, "
            f"CASE WHEN (i / {pairs}) % 1000 = 3 THEN interval '1 second' * (i % 3600) "
            "ELSE interval '1 millisecond' * (200 + i % 5000) END AS lag "
            f"FROM generate_series(1, {events}) i) e "
            f"JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n "
            f"FROM replication_bucketpair) p ON p.n = e.i % {pairs}",
        ),
        (
            "object state",
            "INSERT INTO replication_objectstate (pair_id, key, version_id, event_name, "
            "event_time, sequencer, sequencer_order, attempt, size, etag, status, error_code, "
            "error_message, finished_at, updated_at, finding, finding_at, source_modified_at, "
            "lacking_since, kept_etag) "
            "SELECT pair_id, key, version_id, event_name, event_time, sequencer, "
            "sequencer_order, attempt, size, etag, status, error_code, error_message, "
            "finished_at, received_at, "
            "CASE WHEN id % 1000 = 7 THEN 'missing' ELSE '' END, "
            "CASE WHEN id % 1000 = 7 THEN finished_at + interval '1 hour' END, "
            "CASE WHEN id % 1000 = 7 THEN event_time END, "
            "CASE WHEN id % 1000 = 7 THEN finished_at + interval '1 hour' END, '' "
            "FROM replication_copyevent",
        ),
        (
            "reconcile runs",
            "INSERT INTO replication_reconcilerun (pair_id, trigger, repair, status, verdict, "
            "celery_task_id, created_at, started_at, finished_at, heartbeat_at, error, "
            "objects_scanned, source_objects, destination_objects, source_bytes, "
            "destination_bytes, in_sync, missing, extra, mismatched, unverified, in_flight, "
            "checksum_settled, repaired, repair_failed, discrepancies_stored, ranges_total, "
            "ranges_done, range_boundaries, repair_total, repaired_missing, "
            "repaired_mismatched, extras_deleted, settled_in_sync, settled_missing, kept) "
            "SELECT p.id, 'scheduled', false, 'succeeded', "
            "CASE WHEN d % 7 = 0 THEN 'out_of_sync' ELSE 'in_sync' END, '', "
            "now() - interval '1 day' * d, now() - interval '1 day' * d, "
            "now() - interval '1 day' * d + interval '5 minutes', NULL, '', 80000, 40000, "
            "40000, 0, 0, 40000, CASE WHEN d % 7 = 0 THEN 40 ELSE 0 END, 0, 0, 0, 0, 0, 0, 0, "
            "0, 1, 1, '[]'::jsonb, 0, 0, 0, 0, 0, 0, 0 "
            "FROM replication_bucketpair p, generate_series(0, 29) d",
        ),
        (
            "copy totals",
            "INSERT INTO replication_copytally (pair_id, status, lag_bucket, shard, copies, "  # noqa: S608 (our own figures)
            "lag_seconds_sum) "
            f"SELECT pair_id, status, {bucket_index_sql(seconds)}, id % {SHARDS}, count(*), "
            f"sum({seconds}) FROM replication_copyevent GROUP BY 1, 2, 3, 4",
        ),
        (
            "ingest totals",
            "INSERT INTO replication_ingesttally (counter, label, shard, count) "  # noqa: S608 (our own figures)
            f"SELECT c, l, s, 1000 FROM generate_series(0, {SHARDS - 1}) s, "
            "(VALUES ('requests', '202'), ('requests', '400'), ('requests', '401'), "
            "('rejections', 'invalid'), ('rejections', 'unauthenticated'), "
            "('rejections', 'unregistered_pair')) v(c, l)",
        ),
        # As a live database would be (autovacuum): statistics current and the visibility
        # map set, which the index only scans of what the backup lacks depend on.
        ("vacuum analyze", "VACUUM ANALYZE"),
    ]
    with connection.cursor() as cursor:
        for label, sql in steps:
            began = time.perf_counter()
            cursor.execute(sql)
            print(f"  {label}: {cursor.rowcount} rows, {time.perf_counter() - began:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--database", default="bench_metrics")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="reuse a database already filled")
    args = parser.parse_args()

    url = f"postgres://{args.user}@{args.host}:5432/{args.database}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    if not args.keep:
        psql(f'DROP DATABASE IF EXISTS "{args.database}"', args.host, args.user)
        psql(f'CREATE DATABASE "{args.database}"', args.host, args.user)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            check=True,
        )

    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    if not args.keep:
        print(f"filling {args.pairs} pairs, {args.events:,} events:")
        began = time.perf_counter()
        fill(args.pairs, args.events)
        print(f"  filled in {time.perf_counter() - began:.0f} s")

    import backupsite.wsgi  # noqa: F401  (start as a web worker does: it freezes start-up)

    client = Client(HTTP_HOST="localhost")
    # Counted by a wrapper: Django empties connection.queries when a request starts.
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, *a: queries.append(sql) or execute(sql, *a)
    ):
        first = client.get("/metrics")
    assert first.status_code == 200, first.status_code
    samples = sum(
        len(family.samples) for family in text_string_to_metric_families(first.content.decode())
    )
    times = []
    for _ in range(args.scrapes):
        began = time.perf_counter()
        response = client.get("/metrics")
        times.append(time.perf_counter() - began)
        assert response.status_code == 200
    times.sort()
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
    # What the database holds (with --keep, not what the arguments say).
    from replication.models import BucketPair

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'replication_copyevent'"
        )
        events = cursor.fetchone()[0]
    print(
        f"scrape of {BucketPair.objects.count()} pairs, about {events:,} events: "
        f"p50 {statistics.median(times) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
        f"max {times[-1] * 1000:.1f} ms over {len(times)} scrapes; "
        f"{len(queries)} queries, {samples} samples, {len(first.content):,} bytes; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    verdict = "meets" if p95 < 0.200 else "MISSES"
    print(f"p95 {p95 * 1000:.1f} ms {verdict} the 200 ms target")


if __name__ == "__main__":
    main()

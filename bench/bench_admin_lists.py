"""Benchmark: the admin's copy event and object state lists at large sizes.

Not a test: it prints figures. Fills a PostgreSQL database of your own (DATABASE_URL, never a
shared one: it adds rows to whatever is there) with ``--rows`` copy events and as many object
states over 100 pairs and 1,000 reconcile runs, by INSERT ... SELECT generate_series (1% of
events and states failed, 0.1% of states found missing), then opens each list's first page,
unfiltered and with each filter the list offers, as a superuser through Django's test client
and prints, per page, its time, the number of queries, and the plan of every query that took
more than a millisecond (EXPLAIN ANALYZE: top node, rows, execution time); with ``--plans``
the whole plan (EXPLAIN ANALYZE, BUFFERS) of every query of the page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mine .venv/bin/python manage.py migrate
    DATABASE_URL=... .venv/bin/python bench/bench_admin_lists.py --rows 1000000 [--fill] [--plans]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

PAIRS, RUNS = 100, 1000

FILL = """
INSERT INTO replication_bucketpair (name, source_bucket, source_prefix, backup_bucket,
    backup_prefix, region, enabled, grace_seconds, lag_objective_seconds, mirror_deletes,
    created_at, updated_at, badge_token, freshness_target, protection_window_days,
    guard_min_changes, guard_factor, guard_usual, restore_drill_every_days, drill_max_bytes,
    drill_scratch)
SELECT 'bench-' || i, 'bench-src-' || i, '', 'bench-bak-' || i, '', 'us-east-1', true, 900,
    900, false, now(), now(), md5('bench' || i), 99.9, 30, 500, 10, 0, 7, 1073741824, ''
FROM generate_series(1, {pairs}) i;

INSERT INTO replication_reconcilerun (pair_id, trigger, repair, status, verdict,
    celery_task_id, created_at, started_at, finished_at, error, objects_scanned,
    source_objects, destination_objects, source_bytes, destination_bytes, in_sync, missing,
    extra, mismatched, unverified, in_flight, checksum_settled, repaired, repair_failed,
    discrepancies_stored, ranges_total, ranges_done, range_boundaries, repair_total,
    repaired_missing, repaired_mismatched, extras_deleted, settled_in_sync, settled_missing,
    kept)
SELECT p.id, 'scheduled', false, 'succeeded', 'out_of_sync', '',
    now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval,
    now() - (i || ' minutes')::interval, '', 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
    '[]', 0, 0, 0, 0, 0, 0, 0
FROM generate_series(1, {runs}) i
JOIN LATERAL (SELECT id FROM replication_bucketpair WHERE name = 'bench-' || (1 + i % {pairs})) p
    ON true;

INSERT INTO replication_copyevent (pair_id, key, version_id, event_name, event_time, sequencer,
    sequencer_order, attempt, size, etag, status, error_code, error_message, finished_at,
    started_at, lag, request_id, received_at)
SELECT first_pair + i % {pairs}, 'logs/' || i || '.gz', '', 'ObjectCreated:Put',
    now() - (i || ' seconds')::interval - interval '2 seconds', lpad(to_hex(i), 16, '0'),
    upper(rpad(lpad(to_hex(i), 16, '0'), 32, '0')), 1, 1024, md5(i::text),
    CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'copied' END, '', '',
    now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval - interval '1 second',
    interval '2 seconds', '', now() - (i || ' seconds')::interval
FROM generate_series(1, {rows}) i,
    (SELECT min(id) AS first_pair FROM replication_bucketpair WHERE name LIKE 'bench-%') p;

INSERT INTO replication_objectstate (pair_id, key, version_id, event_name, event_time,
    sequencer, sequencer_order, attempt, size, etag, status, error_code, error_message,
    finished_at, updated_at, finding, finding_at, finding_run_id, lacking_since,
    source_modified_at, kept_etag)
SELECT first_pair + i % {pairs}, 'logs/' || i || '.gz', '', 'ObjectCreated:Put',
    now() - (i || ' seconds')::interval, lpad(to_hex(i), 16, '0'),
    upper(rpad(lpad(to_hex(i), 16, '0'), 32, '0')), 1, 1024, md5(i::text),
    CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'copied' END, '', '',
    now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval,
    CASE WHEN i % 1000 = 0 THEN 'missing' ELSE 'in_sync' END, now(), first_run + i % {runs},
    NULL, now() - (i || ' seconds')::interval, ''
FROM generate_series(1, {rows}) i,
    (SELECT min(id) AS first_pair FROM replication_bucketpair WHERE name LIKE 'bench-%') p,
    (SELECT min(id) AS first_run FROM replication_reconcilerun) r;

ANALYZE;
"""

EVENTS, STATES = "/admin/replication/copyevent/", "/admin/replication/objectstate/"
# Each list's first page, unfiltered and with each filter it offers ({pair}: a pair's id).
LISTS = {
    "copy events": EVENTS,
    "copy events, failed": EVENTS + "?status__exact=failed",
    "copy events, held": EVENTS + "?status__exact=held",
    "copy events, one pair": EVENTS + "?pair__id__exact={pair}",
    "object states": STATES,
    "object states, failed": STATES + "?status__exact=failed",
    "object states, missing": STATES + "?finding__exact=missing",
    "object states, one pair": STATES + "?pair__id__exact={pair}",
}


def fill(rows: int) -> None:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for statement in FILL.format(rows=rows, pairs=PAIRS, runs=RUNS).split(";\n"):
            if statement.strip():
                cursor.execute(statement)
    print(f"filled {rows:,} events and object states in {time.perf_counter() - started:.1f} s")


def full_plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(f"      {row[0]}" for row in cursor.fetchall())


def plan_summary(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        (document,) = cursor.fetchone()
    plan = document[0]["Plan"] if isinstance(document, list) else document
    nodes = []

    def walk(node, depth=0):
        name = node["Node Type"]
        if "Index Name" in node:
            name += f" using {node['Index Name']}"
        elif "Relation Name" in node:
            name += f" on {node['Relation Name']}"
        nodes.append(f"{'  ' * depth}{name} (rows {node.get('Actual Rows')})")
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(plan)
    execution = document[0]["Execution Time"]
    return f"{execution:.1f} ms\n      " + "\n      ".join(nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fill", action="store_true", help="add the rows first")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plans", action="store_true", help="every query's whole plan")
    parser.add_argument("--only", help="only the pages whose name contains this")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("needs PostgreSQL: set DATABASE_URL to a database of your own")
    if args.fill:
        fill(args.rows)
    setup_test_environment()
    user, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM replication_copyevent")
        events = cursor.fetchone()[0]
    print(
        f"rows: {events:,} copy events; machine: {os.cpu_count()} cores, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id) FROM replication_bucketpair WHERE name LIKE 'bench-%'")
        pair = cursor.fetchone()[0]
    for name, url in LISTS.items():
        if args.only and args.only not in name:
            continue
        url = url.format(pair=pair)
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.status_code
        print(
            f"\n{name}: page median {statistics.median(times) * 1000:.0f} ms over "
            f"{args.repeat}, {len(queries)} queries"
        )
        for query in queries:
            if args.plans:
                print(f"  {float(query['time']) * 1000:.1f} ms: {query['sql']}")
                if query["sql"].startswith("SELECT"):
                    print(full_plan(query["sql"]))
            elif float(query["time"]) >= 0.001 and query["sql"].startswith("SELECT"):
                print(f"  {float(query['time']) * 1000:.1f} ms: {query['sql'][:160]}")
                print(f"    plan: {plan_summary(query['sql'])}")


if __name__ == "__main__":
    main()

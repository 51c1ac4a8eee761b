"""Server time of a pair's monthly evidence report, page and CSV, at 2,000,000 events in the
month, on PostgreSQL.

    .venv/bin/python bench/bench_report.py [--events 2000000] [--runs-every 15]
                                           [--requests 20] [--keep]

What it does:
1. recreates a PostgreSQL database of its own (default ``bench_report`` on 127.0.0.1, user
   postgres) and migrates it (``--keep`` reuses a database filled by an earlier run);
2. registers one pair (created two months ago) and generates ``--events`` copy events spread
   evenly over last calendar month (UTC), inside PostgreSQL, with lags of a few seconds,
   0.3% over 15 minutes and 0.5% failures; the per-day freshness counts ingest would have
   kept (one grouped INSERT ... SELECT); a reconcile run every ``--runs-every`` minutes, one
   in fifty out of sync; a health change and a sent notification every six hours; the
   seven protection checks every 5 minutes from a day before the month (a change of state
   every 100 results); then ANALYZE;
3. logs a superuser in with Django's test Client and times the report page, its CSV and the
   pair page, after two warm-up requests each;
4. prints p50/p95 in milliseconds and the number of SQL queries of each.

Not a test: filling takes a few minutes and the figures are from a shared machine.
"""

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_dashboard import measure, open_database  # noqa: E402

EVENTS_SQL = """
INSERT INTO replication_copyevent (
    pair_id, key, version_id, event_name, event_time, sequencer, sequencer_order, attempt,
    size, etag, status, error_code, error_message, finished_at, started_at, lag, request_id,
    received_at)
SELECT %(pair)s, 'data/' || g || '.bin', '', 'ObjectCreated:Put',
       e.finished_at - e.lag, lpad(to_hex(g), 18, '0'),
       upper(rpad(lpad(to_hex(g), 18, '0'), 32, '0')),
       1, 1024 + mod(g, 100000), '"' || md5(g::text) || '"',
       CASE WHEN mod(g, 200) = 0 THEN 'failed' ELSE 'copied' END,
       CASE WHEN mod(g, 200) = 0 THEN 'AccessDenied' ELSE '' END,
       CASE WHEN mod(g, 200) = 0 THEN 'Access Denied' ELSE '' END,
       e.finished_at, e.finished_at - e.lag / 2, e.lag, 'req-' || g, e.finished_at
FROM generate_series(1, %(events)s) AS g
JOIN LATERAL (
    SELECT %(start)s::timestamptz
               + make_interval(secs => %(span)s * ((g - 1)::double precision / %(events)s))
               AS finished_at,
           make_interval(secs => 0.2 + mod(g, 97) * 0.08
                                 + CASE WHEN mod(g, 333) = 0 THEN 1200 ELSE 0 END) AS lag
) AS e ON true
"""

# What ingest's statement would have added, in one grouped pass (freshness_tally_cte).
TALLIES_SQL = """
INSERT INTO replication_freshnesstally (pair_id, day, objective_seconds, shard, copies, within)
SELECT pair_id, (finished_at AT TIME ZONE 'UTC')::date, 900, 0, count(*),
       count(*) FILTER (WHERE lag <= interval '900 seconds')
FROM replication_copyevent WHERE status = 'copied' GROUP BY 1, 2
"""

RUNS_SQL = """
INSERT INTO replication_reconcilerun (
    pair_id, trigger, repair, status, verdict, celery_task_id, created_at, started_at,
    finished_at, heartbeat_at, error, objects_scanned, source_objects, destination_objects,
    source_bytes, destination_bytes, in_sync, missing, extra, mismatched, unverified,
    in_flight, checksum_settled, repaired, repair_failed, discrepancies_stored, ranges_total,
    ranges_done, range_boundaries, requested_by_id, repair_total, repaired_missing,
    repaired_mismatched, extras_deleted, settled_in_sync, settled_missing, kept)
SELECT %(pair)s, 'scheduled', false, 'succeeded',
       CASE WHEN mod(n, 50) = 0 THEN 'out_of_sync' ELSE 'in_sync' END, '', t, t,
       t + interval '40 seconds', t, '', 80000, 40000, 40000, 0, 0, 40000,
       CASE WHEN mod(n, 50) = 0 THEN 3 ELSE 0 END, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, '[]', NULL,
       0, 0, 0, 0, 0, 0, 0
FROM generate_series(0, %(runs)s - 1) AS n,
     LATERAL (SELECT %(start)s::timestamptz + make_interval(mins => n * %(every)s) AS t) AS r
"""

HEALTH_SQL = """
INSERT INTO replication_healthchange (pair_id, sequence, from_state, to_state, reason, reasons, at)
SELECT %(pair)s, n + 1,
       CASE WHEN n = 0 THEN '' WHEN mod(n, 2) = 1 THEN 'ok' ELSE 'warning' END,
       CASE WHEN mod(n, 2) = 1 THEN 'warning' ELSE 'ok' END,
       'reason ' || n, '[]', %(start)s::timestamptz + make_interval(hours => 6 * n)
FROM generate_series(0, %(changes)s - 1) AS n
"""

NOTIFICATIONS_SQL = """
INSERT INTO replication_notification (
    change_id, channel_id, kind, sequence, state, reason, status, attempts, last_error,
    created_at, claimed_at, next_attempt_at, sent_at)
SELECT id, %(channel)s, 'alert', 0, to_state, reason, 'sent', 1, '', at, at, at, at
FROM replication_healthchange WHERE pair_id = %(pair)s
"""


# Every check every 5 minutes (hourly runs and many "check now"s: more than a site keeps),
# a change of state every 100 results; none marked latest (the report reads history).
PROTECTION_SQL = """
INSERT INTO replication_protectionresult (
    pair_id, check_id, state, reason, fix, detail, observed, checked_at, is_latest)
SELECT %(pair)s, c, CASE WHEN mod(n / 100, 10) = 9 THEN 'warning' ELSE 'ok' END,
       'reason ' || n, '', '', '', %(start)s::timestamptz + make_interval(mins => 5 * n), false
FROM generate_series(-288, %(checks)s - 1) AS n,
     unnest(ARRAY['backup_versioning', 'backup_retention', 'backup_object_lock',
                  'backup_public_access', 'backup_policy', 'source_trigger', 'encryption']) AS c
"""


def previous_month(now: datetime) -> tuple[datetime, datetime]:
    first = datetime(now.year, now.month, 1, tzinfo=UTC)
    start = datetime(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1, tzinfo=UTC)
    return start, first


def fill(events: int, every: int) -> None:
    from django.db import connection

    from replication.models import AlertChannel, BucketPair

    started = time.perf_counter()
    start, end = previous_month(datetime.now(UTC))
    pair = BucketPair.objects.create(
        name="busy", source_bucket="busy-src", backup_bucket="busy-bak"
    )
    BucketPair.objects.filter(pk=pair.pk).update(created_at=start.replace(day=1) - (end - start))
    channel = AlertChannel.objects.create(
        name="ops", kind="webhook", target="https://x.example.com/"
    )
    span = (end - start).total_seconds()
    params = {
        "pair": pair.pk,
        "events": events,
        "start": start,
        "span": span,
        "runs": int(span // (every * 60)),
        "every": every,
        "changes": int(span // (6 * 3600)),
        "checks": int(span // 300),
        "channel": channel.pk,
    }
    with connection.cursor() as cursor:
        for label, sql in (
            ("events", EVENTS_SQL),
            ("freshness days", TALLIES_SQL),
            ("runs", RUNS_SQL),
            ("health changes", HEALTH_SQL),
            ("notifications", NOTIFICATIONS_SQL),
            ("protection results", PROTECTION_SQL),
        ):
            step = time.perf_counter()
            cursor.execute(sql, params)
            print(f"  {label}: {cursor.rowcount:,} rows in {time.perf_counter() - step:.0f} s")
        cursor.execute("ANALYZE")
    print(f"filled in {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--runs-every", type=int, default=15, help="minutes between runs")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--database", default="bench_report")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--keep", action="store_true", help="reuse a database already filled")
    args = parser.parse_args()

    open_database(args.database, args.host, args.user, fresh=not args.keep)
    from django.contrib.auth.models import User
    from django.test import Client

    if not args.keep:
        print(f"filling: {args.events:,} events in last month, a run every {args.runs_every} min")
        fill(args.events, args.runs_every)
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    month = f"{previous_month(datetime.now(UTC))[0]:%Y-%m}"
    print(f"{args.requests} requests each (after 2 warm-up), server time in ms:")
    for label, page in (
        ("report", f"/pairs/busy/report/{month}/"),
        ("report CSV", f"/pairs/busy/report/{month}.csv"),
        ("pair page", "/pairs/busy/"),
    ):
        m = measure(client, page, args.requests)
        print(
            f"  {label:<10} p50 {m['p50']:6.1f}  p95 {m['p95']:6.1f}   of which SQL: "
            f"p50 {m['sql_p50']:6.1f}  p95 {m['sql_p95']:6.1f}  ({m['queries']} queries)"
        )


if __name__ == "__main__":
    main()

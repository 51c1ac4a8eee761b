"""How long one health evaluation (the alerts beat task, every minute) takes, on PostgreSQL.

    .venv/bin/python bench/bench_alerts.py [--pairs 50 500] [--channels 3] [--repeat 5]

For each pair count it:
1. recreates a PostgreSQL database of its own (``bench_alerts`` on 127.0.0.1, user postgres)
   and migrates it;
2. registers the pairs, each with one finished in-sync reconcile, and ``--channels`` alert
   channels serving all pairs;
3. evaluates once (every pair's first state is recorded), then times ``--repeat`` steady-state
   evaluations (nothing changes: the every-minute case);
4. makes every pair's latest reconcile out of sync and times the evaluation that records
   the wave: one change per pair and one notification per pair and channel.

Sending is not timed (each notification is its own task on the workers). Not a test: it
measures a shared machine; compare figures from one run.
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
NAME = "bench_alerts"


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def fresh_database() -> None:
    psql(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{NAME}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=os.environ,
        check=True,
    )


def timed(fn) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
    return elapsed, len(queries)


def bench(n_pairs: int, n_channels: int, repeat: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from replication.alerts.evaluate import evaluate
    from replication.models import AlertChannel, BucketPair, Notification, ReconcileRun

    connection.close()
    fresh_database()
    pairs = BucketPair.objects.bulk_create(
        BucketPair(name=f"pair-{i:04d}", source_bucket=f"src-{i:04d}", backup_bucket=f"bak-{i:04d}")
        for i in range(n_pairs)
    )
    now = timezone.now()
    ReconcileRun.objects.bulk_create(
        ReconcileRun(pair=p, status="succeeded", verdict="in_sync", finished_at=now) for p in pairs
    )
    for c in range(n_channels):
        AlertChannel.objects.create(
            name=f"ch-{c}", kind="webhook", target="https://example.com/hook", all_pairs=True
        )
    evaluate()
    steady = [timed(evaluate) for _ in range(repeat)]
    ReconcileRun.objects.bulk_create(
        ReconcileRun(pair=p, status="succeeded", verdict="out_of_sync", missing=1, finished_at=now)
        for p in pairs
    )
    wave_s, wave_queries = timed(evaluate)
    notifications = Notification.objects.count()
    seconds = [s for s, _ in steady]
    print(
        f"{n_pairs:>5} pairs, {n_channels} channels: steady state median "
        f"{statistics.median(seconds) * 1000:.0f} ms (min {min(seconds) * 1000:.0f}, "
        f"max {max(seconds) * 1000:.0f}) in {steady[0][1]} queries; "
        f"all turning critical: {wave_s * 1000:.0f} ms, {wave_queries} queries, "
        f"{notifications} notifications"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{NAME}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    for n in args.pairs:
        bench(n, args.channels, args.repeat)
    from django.db import connection

    connection.close()
    psql(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()

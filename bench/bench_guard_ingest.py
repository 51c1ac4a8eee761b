"""Benchmark: what the destructive-change guard's counting adds to ingest's store_batch.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/NAME \\
        .venv/bin/python bench/bench_guard_ingest.py [--batches 200] [--size 100]

An in-process A/B on PostgreSQL: the same ``store_batch`` runs with ingest's one statement
as it is (A: with the guard's CTE) and with that CTE cut out (B), batch by batch
alternately, so load from other programs weighs on both alike. Each batch holds fresh
events, a quarter of them overwrites and a quarter deletes of keys stored before (the worst
case: every one is counted). Migrates the database it is given and adds rows to it. Prints
the median time per batch of each and their ratio. Not a test: compare the ratio.
"""

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL database: the guard's CTE is PostgreSQL's")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    from replication.ingest import store
    from replication.ingest.schema import parse_batch
    from replication.models import BucketPair
    from replication.protection import counting

    call_command("migrate", verbosity=0)
    name = f"bench-guard-{int(time.time())}"
    pair = BucketPair.objects.create(
        name=name,
        source_bucket="bench-guard-src",
        backup_bucket="bench-guard-bak",
        source_prefix=f"{name}/",
    )
    with_guard = store._postgresql_batch(store._STATE_UPSERT)
    cte = f", new_guard AS ({counting.guard_tally_cte('new_events')}) "
    assert cte in with_guard
    without_guard = with_guard.replace(cte, " ")
    sequence = itertools.count(1)
    stored: list[str] = []

    def batch() -> bytes:
        now = datetime.now(UTC)
        events = []
        for i in range(args.size):
            n = next(sequence)
            kind = i % 4
            if kind == 2 and stored:
                key, name_, status, etag = (
                    stored[n % len(stored)],
                    "ObjectCreated:Put",
                    "copied",
                    f"{n:032x}",
                )
            elif kind == 3 and stored:
                key, name_, status, etag = (
                    stored[n % len(stored)],
                    "ObjectRemoved:Delete",
                    "deleted",
                    "",
                )
            else:
                key, name_, status, etag = (
                    f"{pair.source_prefix}k/{n:09d}",
                    "ObjectCreated:Put",
                    "copied",
                    f"{n:032x}",
                )
                stored.append(key)
            events.append(
                {
                    "source_bucket": pair.source_bucket,
                    "destination_bucket": pair.backup_bucket,
                    "key": key,
                    "event_name": name_,
                    "event_time": (now - timedelta(seconds=2)).isoformat(),
                    "sequencer": f"{n:018X}",
                    "size": 10,
                    "etag": etag,
                    "status": status,
                    "started_at": (now - timedelta(seconds=1)).isoformat(),
                    "finished_at": now.isoformat(),
                    "attempt": 1,
                }
            )
        return json.dumps({"events": events}).encode()

    times = {"with guard": [], "without": []}
    original = store._postgresql_batch
    try:
        for round_ in range(args.batches + 10):
            for side, sql in (("with guard", with_guard), ("without", without_guard)):
                events = parse_batch(batch(), max_events=10_000)
                store._postgresql_batch = lambda _upsert, sql=sql: sql
                started = time.perf_counter()
                store.store_batch(events, datetime.now(UTC))
                if round_ >= 10:  # warm-up rounds are not counted
                    times[side].append(time.perf_counter() - started)
    finally:
        store._postgresql_batch = original
    a, b = (statistics.median(times[s]) * 1000 for s in ("with guard", "without"))
    print(
        f"{args.batches} batches of {args.size} events per side, a quarter each overwrites, deletes"
    )
    print(f"store_batch median: with the guard's CTE {a:.2f} ms, without {b:.2f} ms")
    print(f"ratio {a / b:.3f}")


if __name__ == "__main__":
    main()

"""Benchmark: the CPU a reconcile spends writing findings, without S3 in the way.

    .venv/bin/python bench/bench_findings.py [--objects 100000] [--repeat 3]

Runs the merge of two in-memory listings of N objects each (1% missing, like
bench_reconcile.py) twice, in this process, on a fresh SQLite database:

  (a) as before findings: ``diff`` yields differences only, each handed to a no-op writer;
  (b) as now: ``diff(..., in_sync=writer.wants_in_sync)`` and every item through
      ``FindingWriter.see``, which
      upserts the missing objects' findings and merges the pair's open problems (``--problems``
      of them, open failures in sync by now) with the listing.

and prints the process CPU time of each and the difference. bench_reconcile.py measures the
whole command on moto, where the listing dominates and wall times swing by 30% on a shared
machine; this isolates what the findings add, to compare with the command's CPU time.

With ``--database NAME`` it measures instead how a range reads a pair's open problems
(``problem_keys``) on PostgreSQL, in a database of its own (dropped and filled unless
``--keep``): ``--pairs`` pairs and ``--events`` copy events with their object states, as
bench_dashboard.py fills them, plus ``--problems`` open failures in the first pair. It prints
the time of ``--pages`` pages of 1,000 keys read from the start, the middle and near the end of
that pair's problems, the time to read them all (``--all``), and the plan of a page in the
middle (EXPLAIN ANALYZE, BUFFERS):

    .venv/bin/python bench/bench_findings.py --database bench_findings \
        --pairs 1000 --events 20000000 --problems 1000000 [--keep] [--all]
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(workdir: str) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def listings(n: int):
    from replication.reconcile.diff import Entry

    when = datetime(2026, 1, 1, tzinfo=UTC)
    keys = [f"data/{i % 50:02d}/{i:07d}.bin" for i in range(n)]
    keys.sort()
    source = [Entry(k, 100, "e" * 32, when) for k in keys]
    backup = [Entry(k, 100, "e" * 32, when) for i, k in enumerate(keys) if i % 100 != 1]
    return source, backup, keys


def make_run(pair_name: str, problems: list[str]):
    from django.utils import timezone

    from replication.models import BucketPair, ObjectState, ReconcileRun

    pair = BucketPair.objects.create(
        name=pair_name, source_bucket="bench-src", backup_bucket="bench-bak"
    )
    now = timezone.now()
    ObjectState.objects.bulk_create(
        ObjectState(
            pair=pair,
            key=k,
            event_name="ObjectCreated:Put",
            event_time=now - timedelta(hours=1),
            sequencer="0A",
            sequencer_order="0A".ljust(32, "0"),
            status="failed",
            finished_at=now - timedelta(hours=1),
        )
        for k in problems
    )
    return ReconcileRun.objects.create(pair=pair, status="running", started_at=now)


def before(source, backup) -> int:
    from replication.reconcile.diff import diff

    kept = 0
    for difference in diff(source, backup, in_flight_after=datetime.now(UTC)):
        kept += difference.kind != "in_sync"
    return kept


def after(source, backup, run) -> int:
    from replication.reconcile.diff import IN_SYNC, diff
    from replication.reconcile.findings import FindingWriter
    from replication.reconcile.ranges import KeyRange

    findings = FindingWriter(run, KeyRange(None, None))
    kept = 0
    for difference in diff(
        source, backup, in_flight_after=datetime.now(UTC), in_sync=findings.wants_in_sync
    ):
        findings.see(difference)
        kept += difference.kind != IN_SYNC
    findings.flush()
    return kept


def cpu() -> float:
    return time.process_time()


# Open failures of the first pair, keyed 'fail/<md5>': in random order to the insert, spread
# evenly over the hexadecimal digits (so 'fail/8' is about the middle).
PROBLEMS_SQL = """
INSERT INTO replication_objectstate (
    pair_id, key, version_id, event_name, event_time, sequencer, sequencer_order, attempt,
    size, etag, status, error_code, error_message, finished_at, updated_at, finding,
    finding_at, source_modified_at, lacking_since, finding_run_id, kept_etag)
SELECT (SELECT min(id) FROM replication_bucketpair), 'fail/' || md5(g::text), '',
       'ObjectCreated:Put', now() - interval '1 hour', lpad(to_hex(g), 18, '0'),
       upper(rpad(lpad(to_hex(g), 18, '0'), 32, '0')), 1, 1024, '', 'failed', 'AccessDenied',
       'Access Denied', now() - interval '1 hour', now() - interval '1 hour', '', NULL, NULL,
       NULL, NULL, ''
FROM generate_series(1, %(problems)s) AS g
"""

# Where the timed pages start: the beginning, the middle and near the end of the problems.
POSITIONS = {"the start": None, "the middle": "fail/8", "near the end": "fail/e6"}


def problem_paging(args) -> None:
    from bench.bench_dashboard import fill, open_database

    open_database(args.database, args.host, args.user, fresh=not args.keep)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from replication.models import BucketPair
    from replication.reconcile import findings
    from replication.reconcile.ranges import KeyRange

    if not args.keep:
        print(f"filling: {args.pairs} pairs, {args.events:,} events and their object states")
        fill(args.pairs, args.events, 1)
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(PROBLEMS_SQL, {"problems": args.problems})
            print(f"  problems: {cursor.rowcount:,} rows in {time.perf_counter() - started:.0f} s")
            cursor.execute("VACUUM ANALYZE replication_objectstate")
    pair_id = BucketPair.objects.order_by("id").values_list("id", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM replication_copyevent")
        events = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM replication_objectstate WHERE pair_id = %s AND status = 'failed'",
            [pair_id],
        )
        problems = cursor.fetchone()[0]
    print(
        f"{events:,} events, {BucketPair.objects.count():,} pairs; {problems:,} open failures "
        f"in the pair read; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for label, start_after in POSITIONS.items():
        keys = findings.problem_keys(pair_id, "", KeyRange(start_after, None))
        started = time.perf_counter()
        for _ in range(args.pages * findings._PAGE):
            next(keys)
        per_page = (time.perf_counter() - started) * 1000 / args.pages
        print(f"  {args.pages} pages from {label}: {per_page:8.1f} ms a page")
    with CaptureQueriesContext(connection) as queries:
        next(findings.problem_keys(pair_id, "", KeyRange(POSITIONS["the middle"], None)))
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + queries[0]["sql"])
        plan = "\n".join(f"    {row[0]}" for row in cursor.fetchall())
    print(f"  a page from the middle:\n    {queries[0]['sql']}\n{plan}")
    if args.all:
        started = time.perf_counter()
        count = sum(1 for _ in findings.problem_keys(pair_id, "", KeyRange()))
        print(f"  all {count:,} problem keys of the pair: {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--problems", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", help="PostgreSQL: measure problem_keys' paging there")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--pairs", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="use the database as it is")
    parser.add_argument("--all", action="store_true", help="also read every problem key")
    args = parser.parse_args()
    if args.database:
        problem_paging(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-findings-") as workdir:
        setup(workdir)
        source, backup, keys = listings(args.objects)
        in_sync_keys = [k for i, k in enumerate(keys) if i % 100 != 1]
        step = max(1, len(in_sync_keys) // max(1, args.problems))
        problems = in_sync_keys[::step][: args.problems]
        print(
            f"{args.objects:,} objects per side, {len(problems):,} open failures; load "
            f"{os.getloadavg()}"
        )
        for attempt in range(args.repeat):
            run = make_run(f"bench-{attempt}", problems)
            started = cpu()
            before(source, backup)
            old = cpu() - started
            started = cpu()
            after(source, backup, run)
            new = cpu() - started
            print(
                f"  before {old:6.3f} s CPU   after {new:6.3f} s CPU   "
                f"findings add {new - old:+6.3f} s"
            )


if __name__ == "__main__":
    main()

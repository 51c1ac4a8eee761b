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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--problems", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
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

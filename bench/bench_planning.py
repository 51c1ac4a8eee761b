"""Benchmark: a first run's planning (the probes that cut the key space) against s3sim.

    .venv/bin/python -u bench/bench_planning.py [--objects 10000 --objects 1000000]

For each size and each of s3sim's layouts (``dirs``, ``flat``, ``onedir``; bench/s3sim.py,
40 ms per request, requests served at once, as S3 does), times ``ranges.first_run_cuts``
over the reconcile's own listing client, as a pair's first run calls it, and prints the
median of five plannings, its round trips and probes, and how many ranges it planned. The
planning is the part of a first run that no other tool pays: rclone and the bare paginators
start listing at once.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import s3sim_env, start_s3sim  # bench/ by path
from s3sim import LATENCY

LAYOUTS = ("dirs", "flat", "onedir")
REPEAT = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, action="append", help="objects per side")
    parser.add_argument("--latency", type=float, default=LATENCY, help="s3sim seconds/request")
    args = parser.parse_args()
    sim, endpoint = start_s3sim(args.latency)
    try:
        print(f"s3sim at {endpoint}, {args.latency * 1000:.0f} ms a request; {os.cpu_count()} CPUs")
        plan(endpoint, args.objects or [10_000, 100_000, 1_000_000])
    finally:
        sim.terminate()
        sim.wait()


def plan(endpoint: str, sizes: list[int]) -> None:
    os.environ.update(s3sim_env(endpoint), DJANGO_SETTINGS_MODULE="backupsite.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.conf import settings

    from replication import s3 as s3_clients
    from replication.reconcile.listing import Side, probe_keys
    from replication.reconcile.ranges import first_run_cuts, split

    s3 = s3_clients.listing_client("us-east-1")
    print(f"{'bucket':<22} {'median ms':>10} {'round trips':>12} {'probes':>7} {'ranges':>7}")
    for n in sizes:
        for layout in LAYOUTS:
            source = Side("source", f"src-{n}-{layout}", "")
            asked = {"round_trips": 0, "probes": 0}

            def probe(asks, source=source, asked=asked):
                asked["round_trips"] += 1
                asked["probes"] += len(asks)
                return probe_keys(s3, source, asks)

            times = []
            for _ in range(REPEAT):
                asked.update(round_trips=0, probes=0)
                started = time.perf_counter()
                cuts = first_run_cuts(probe, settings.RECONCILE_MAX_RANGES)
                times.append(time.perf_counter() - started)
            print(
                f"{source.bucket:<22} {statistics.median(times) * 1000:10.0f} "
                f"{asked['round_trips']:12d} {asked['probes']:7d} "
                f"{len(split(cuts, settings.RECONCILE_MAX_RANGES)):7d}",
                flush=True,
            )


if __name__ == "__main__":
    main()

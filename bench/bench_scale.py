"""Benchmark: reconcile at scale against s3sim (a synthetic S3 with S3's LIST latency).

    .venv/bin/python -u bench/bench_scale.py --objects 100000 --objects 1000000
    .venv/bin/python -u bench/bench_scale.py --objects 10000000 --methods reconcile

For each size N, s3sim (bench/s3sim.py, its own process) serves ``src-N-dirs`` and
``bak-N-dirs``: N objects per side (1,000 per directory) and a known diff (1% missing, 0.5%
extra, 0.5% changed, half of them with the same size). Measured one after the other, each
as a fresh process against the same buckets:

  floor      bare boto3 list_objects_v2 paginators of both buckets in parallel + a dict diff
  reconcile  `manage.py reconcile PAIR --json`, a fresh pair (its first run), SQLite (or
             --database-url, e.g. PostgreSQL, which lets the ranges' threads write at once)
  reconcile-2p  the same with RECONCILE_INLINE_PROCESSES=2: its ranges shared by 2 processes
  fast-list  `rclone check --fast-list` (size and MD5/ETag)
  rclone     `rclone check` (lists directory by directory, 8 checkers)

and prints wall time, the measured process's CPU (its children's included; per key listed,
both sides), its peak RSS (the largest of its processes), s3sim's own CPU over the same
time, and whether it found exactly the known diff.
``--latency`` sets s3sim's per-request delay (default 40 ms, the model of S3's LIST).
Up to PREPARE_UP_TO objects per side, s3sim renders the buckets' listings before anything
is measured (``/__s3sim__/prepare``), so a page costs it a slice instead of some 4 ms of the
CPU that the client shares with it; ``--compute-listings`` measures against the computing
server instead.
rclone is not a dependency of the project: when it is absent its rows say so.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import (  # bench/ is not a package: imported by path
    PYTHON,
    ROOT,
    django_env,
    measure,
    prepare_django,
    rclone_env,
    rclone_found,
    reconcile_found,
)
from s3sim import LATENCY, known_diff

DATABASE_URL = ""  # --database-url; SQLite in a temporary directory when empty
METHODS = ("floor", "reconcile", "reconcile-2p", "fast-list", "rclone")
PREPARE_UP_TO = 2_000_000  # objects per bucket: s3sim keeps some 400 MB per million


def start_s3sim(latency: float) -> tuple[subprocess.Popen, str]:
    sim = subprocess.Popen(
        [PYTHON, "-u", str(ROOT / "bench" / "s3sim.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = sim.stdout.readline()  # "s3sim at http://127.0.0.1:PORT (latency ...)"
    return sim, line.split()[2]


def prepare_buckets(endpoint: str, n: int, names: list[str]) -> bool:
    """Have s3sim render these buckets' listings now, before anything is measured."""
    if n > PREPARE_UP_TO:
        return False
    for name in names:
        url = f"{endpoint}/__s3sim__/prepare?bucket={name}"
        with urllib.request.urlopen(url, timeout=600):  # noqa: S310 (loopback)
            pass
    return True


def server_cpu(endpoint: str) -> float:
    with urllib.request.urlopen(f"{endpoint}/__s3sim__/stats") as answer:  # noqa: S310 (loopback)
        return json.load(answer)["cpu_s"]


def run_method(method: str, n: int, endpoint: str, workdir: Path, want) -> dict | None:
    source, backup = f"src-{n}-dirs", f"bak-{n}-dirs"
    if method == "floor":
        command = [PYTHON, str(ROOT / "bench" / "bench_reconcile.py"), "floor", endpoint]
        result = measure([*command, source, backup], {**os.environ, **_keys()})
        found = json.loads(result["stdout"]) if result["returncode"] == 0 else None
        result["correct"] = found is not None and {k: set(v) for k, v in found.items()} == want
    elif method.startswith("reconcile"):
        env = django_env(endpoint, workdir)
        # As in production: with DEBUG, Django keeps the SQL of each connection's last 9,000
        # queries, and the discrepancy rows' bulk inserts would be measured as our memory.
        env["DEBUG"] = "false"
        if DATABASE_URL:
            env["DATABASE_URL"] = DATABASE_URL
        env["RECONCILE_INLINE_PROCESSES"] = "2" if method == "reconcile-2p" else "1"
        pair = f"scale-{n}-{time.monotonic_ns()}"
        prepare_django(env, pair, source, backup)
        result = measure([PYTHON, "manage.py", "reconcile", pair, "--json"], env)
        if result["returncode"] == 0:
            summary = json.loads(result["stdout"])
            found = reconcile_found(env, summary["run"])
            found = {k: found.get(k, set()) for k in want}
            result["correct"] = found == want and summary["unverified"] == 0
        else:
            result["correct"] = False
    else:
        if not shutil.which("rclone"):
            return None
        combined = workdir / f"rclone-{method}-{n}.txt"
        command = ["rclone", "check", "--combined", str(combined)]
        if method == "fast-list":
            command.append("--fast-list")
        command += [f"moto:{source}", f"moto:{backup}"]
        result = measure(command, rclone_env(endpoint))
        ok = result["returncode"] in (0, 1) and combined.exists()
        result["correct"] = ok and rclone_found(combined) == want
        combined.unlink(missing_ok=True)
    if result["returncode"] not in (0, 1) or not result["correct"]:
        print(f"  {method}: exit {result['returncode']}: {result['stderr'].strip()[-400:]}")
    return result


def s3sim_env(endpoint: str) -> dict[str, str]:
    """The environment of a project process that talks to s3sim instead of S3 (s3sim checks
    no signature)."""
    return {
        **_keys(),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "EMBEDDED_S3": "false",
    }


def _keys() -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def bench_size(
    n: int, methods: list[str], endpoint: str, workdir: Path, prepare: bool = True
) -> dict[str, dict]:
    prepared = prepare and prepare_buckets(endpoint, n, [f"src-{n}-dirs", f"bak-{n}-dirs"])
    listings = "prepared" if prepared else "computed per request"
    load = os.getloadavg()[0]
    print(f"\n== {n:,} objects per side; s3sim listings {listings}; load {load:.2f} ==")
    want = known_diff(n)
    keys = n + n - len(want["missing"]) + len(want["extra"])
    results: dict[str, dict] = {}
    for method in methods:
        before = server_cpu(endpoint)
        result = run_method(method, n, endpoint, workdir, want)
        if result is None:
            print(f"  {method}: rclone is NOT INSTALLED, skipped (apt-get install -y rclone)")
            continue
        result["server_cpu_s"] = server_cpu(endpoint) - before
        result["cpu_us_per_key"] = result["cpu_s"] / keys * 1e6
        results[method] = result
        print(
            f"  {method:<10} wall {result['wall_s']:8.2f} s  CPU {result['cpu_s']:7.2f} s "
            f"({result['cpu_us_per_key']:5.1f} us/key)  peak RSS {result['rss_mb']:7.1f} MB  "
            f"s3sim CPU {result['server_cpu_s']:6.2f} s  exact {result['correct']}",
            flush=True,
        )
    for name in ("reconcile", "reconcile-2p"):
        if name in results and "fast-list" in results:
            ours, theirs = results[name], results["fast-list"]
            print(
                f"  {name} / rclone --fast-list: wall {ours['wall_s'] / theirs['wall_s']:.2f}, "
                f"CPU per key {ours['cpu_s'] / theirs['cpu_s']:.2f}"
            )
    if "reconcile" in results and "reconcile-2p" in results:
        ratio = results["reconcile-2p"]["wall_s"] / results["reconcile"]["wall_s"]
        print(f"  2 processes / 1 process: wall {ratio:.2f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, action="append", help="objects per side")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--latency", type=float, default=LATENCY, help="s3sim seconds/request")
    parser.add_argument(
        "--database-url", default="", help="reconcile's database (default: a fresh SQLite file)"
    )
    parser.add_argument(
        "--compute-listings",
        action="store_true",
        help="s3sim computes every listing per request (no prepared buckets)",
    )
    args = parser.parse_args()
    global DATABASE_URL
    DATABASE_URL = args.database_url
    sizes = args.objects or [100_000]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}: choose from {METHODS}")
    if not shutil.which("rclone"):
        print("WARNING: rclone is not installed; its rows are skipped")
    sim, endpoint = start_s3sim(args.latency)
    print(
        f"s3sim at {endpoint}, {args.latency * 1000:.0f} ms per request; "
        f"{os.cpu_count()} CPUs; load {os.getloadavg()}"
    )
    all_results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            for n in sizes:
                all_results[n] = bench_size(
                    n, methods, endpoint, Path(tmp), not args.compute_listings
                )
    finally:
        sim.terminate()
        sim.wait()
    ours = {n: r["reconcile"] for n, r in all_results.items() if "reconcile" in r}
    if len(ours) > 1:
        small, large = min(ours), max(ours)
        growth = ours[large]["rss_mb"] - ours[small]["rss_mb"]
        print(f"\nreconcile peak RSS {small:,} -> {large:,} objects: {growth:+.1f} MB")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Benchmark: one reconcile of N objects per side by 1, then 2, Celery worker processes.

    DATABASE_URL=postgres://... REDIS_URL=redis://.../n \\
        .venv/bin/python -u bench/bench_scale_workers.py --objects 1000000

Against s3sim (bench/s3sim.py, 40 ms per request), a fresh pair each time (its first run, so
the key space is probed and cut into ranges), sent as `replication.tasks.reconcile_pair` to a
queue of its own served by K `celery worker --pool threads --concurrency 8` processes: the
ranges are Celery tasks, the unit of scale-out across machines. Prints the wall time from
sending the task to the run's end, the workers' CPU and the largest peak RSS among them, and
whether the run found exactly the known diff. Needs PostgreSQL and Redis (SQLite would
serialise the workers' writes); use a database of your own.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import PYTHON, ROOT, prepare_django, reconcile_found  # bench/ by path
from bench_scale import start_s3sim
from s3sim import LATENCY, known_diff

_DISPATCH = """
import json, sys, time, django
django.setup()
from replication.models import BucketPair, ReconcileRun
from replication.reconcile import run as reconcile
from replication.tasks import reconcile_pair
pair = BucketPair.objects.get(name=sys.argv[1])
started = time.monotonic()
run, _ = reconcile.request_run(pair)
reconcile_pair.apply_async(args=(pair.id,), kwargs={"run_id": run.id}, queue=sys.argv[2])
while run.status in ReconcileRun.ACTIVE:
    time.sleep(0.2)
    run.refresh_from_db()
print(json.dumps({"run": run.id, "status": run.status, "wall_s": time.monotonic() - started,
                  "ranges": run.ranges_total, "unverified": run.unverified, "error": run.error}))
"""


def proc_cpu_and_peak(pid: int) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def one_run(n: int, workers: int, env: dict[str, str]) -> dict:
    source, backup = f"src-{n}-dirs", f"bak-{n}-dirs"
    pair = f"workers-{workers}-{uuid.uuid4().hex[:6]}"
    prepare_django(env, pair, source, backup)
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    command = [PYTHON, "-m", "celery", "-A", "backupsite", "worker", "--pool", "threads"]
    command += ["--concurrency", "8", "--queues", queue, "--loglevel", "WARNING"]
    command += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
    procs = [
        subprocess.Popen([*command, "--hostname", f"{queue}-{k}@%h"], cwd=ROOT, env=env)
        for k in range(workers)
    ]
    try:
        time.sleep(8)  # the workers connect to the broker
        before = [proc_cpu_and_peak(p.pid)[0] for p in procs]
        done = subprocess.run(
            [PYTHON, "-c", _DISPATCH, pair, queue],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "backupsite.settings"},
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout)
        usage = [proc_cpu_and_peak(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    result["cpu_s"] = sum(cpu for cpu, _ in usage) - sum(before)
    result["rss_mb"] = max(peak for _, peak in usage)
    want = known_diff(n)
    found = reconcile_found(env, result["run"])
    result["correct"] = (
        result["status"] == "succeeded"
        and {k: found.get(k, set()) for k in want} == want
        and result["unverified"] == 0
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="objects per side")
    parser.add_argument("--latency", type=float, default=LATENCY, help="s3sim seconds/request")
    args = parser.parse_args()
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name, "").startswith(("postgres", "redis")):
            parser.error(f"{name} must point at PostgreSQL / Redis")
    sim, endpoint = start_s3sim(args.latency)
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 (s3sim checks no signature)
        AWS_DEFAULT_REGION="us-east-1",
        EMBEDDED_S3="false",
        RECONCILE_MAX_DISCREPANCY_ROWS="1000000",
    )
    print(f"s3sim at {endpoint}; {os.cpu_count()} CPUs; load {os.getloadavg()}")
    results = {}
    try:
        for workers in (1, 2):
            r = one_run(args.objects, workers, env)
            results[workers] = r
            print(
                f"{workers} worker(s): wall {r['wall_s']:7.2f} s  CPU {r['cpu_s']:7.2f} s  "
                f"peak RSS {r['rss_mb']:6.1f} MB  ranges {r['ranges']}  exact {r['correct']}"
                + (f"  error {r['error']}" if r["error"] else ""),
                flush=True,
            )
    finally:
        sim.terminate()
        sim.wait()
    print(f"2 workers / 1 worker wall: {results[2]['wall_s'] / results[1]['wall_s']:.2f}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

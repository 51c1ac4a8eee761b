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

It also prints the CPU that s3sim, PostgreSQL and Redis used meanwhile, in seconds and in
cores over the run, and how busy the machine was while every worker was at work (sampled
every quarter second; the run's average hides it, since one worker plans the run alone
first): on a machine they share with the workers, two workers can only use the cores left.

s3sim's buckets are prepared before the runs (as in bench_scale.py).

``--cpus-per-worker 0.5`` puts each worker in a cgroup of its own whose CFS quota allows it
half a core: the limit a container's CPU limit (Kubernetes' ``cpu: 500m``) sets, so each
worker runs as if on a small machine of its own, while s3sim (S3's model), PostgreSQL and
Redis keep the rest of this one. Without it, everything shares the machine's cores, and on
a 2-core machine the workers' scale-out is bounded by the cores s3sim and the database
take. Capping needs root and a cgroup cpu controller (v1 or v2); the bench says so when
either is missing.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import PYTHON, ROOT, prepare_django, reconcile_found  # bench/ by path
from bench_scale import prepare_buckets, s3sim_env, server_cpu, start_s3sim
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


def services_cpu() -> float:
    """CPU seconds used so far by this machine's PostgreSQL and Redis servers (0 if hidden)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(") ")
        except OSError:  # the process ended while we looked
            continue
        if name.rpartition("(")[2] in ("postgres", "redis-server"):
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far, from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    ticks = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / ticks, (busy + idle + iowait) / ticks


class BusySampler(threading.Thread):
    """Samples the machine's and each worker's CPU every SAMPLE seconds during a run, to say
    how busy the machine was while every worker was at work (not planning, not idle):
    the whole run's average hides that, since one worker plans the run alone."""

    SAMPLE = 0.25
    AT_WORK = 0.2  # cores: a worker using less is waiting for work

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids = pids
        self.samples: list[tuple[float, float, list[float]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            busy, total = machine_cpu()
            workers = [proc_cpu_and_peak(pid)[0] for pid in self.pids]
            self.samples.append((busy, total, workers))
            self.done.wait(self.SAMPLE)

    def stop(self) -> dict:
        """Seconds during which every worker was at work, and the machine's and the
        workers' cores in use meanwhile."""
        self.done.set()
        self.join()
        seconds = busy = workers = 0.0
        cores = os.cpu_count() or 1
        for (b0, t0, w0), (b1, t1, w1) in zip(self.samples, self.samples[1:], strict=False):
            wall = (t1 - t0) / cores
            used = [after - before for before, after in zip(w0, w1, strict=True)]
            if wall > 0 and all(u / wall >= self.AT_WORK for u in used):
                seconds += wall
                busy += b1 - b0
                workers += sum(used)
        return {
            "all_at_work_s": seconds,
            "machine_cores": busy / seconds if seconds else 0.0,
            "worker_cores": workers / seconds if seconds else 0.0,
        }


def cpu_cgroup(name: str, cores: float) -> Path:
    """A new cgroup whose CFS quota allows ``cores`` CPUs; the caller adds the processes."""
    period = 100_000
    quota = max(int(cores * period), 1_000)
    unified = Path("/sys/fs/cgroup")
    controllers = unified / "cgroup.controllers"  # present on a cgroup v2 host only
    if controllers.exists() and "cpu" in controllers.read_text().split():
        subtree = unified / "cgroup.subtree_control"
        if "cpu" not in subtree.read_text().split():
            subtree.write_text("+cpu")
        group = unified / name
        group.mkdir()
        (group / "cpu.max").write_text(f"{quota} {period}")
    else:
        group = Path("/sys/fs/cgroup/cpu") / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    return group


def one_run(
    n: int, workers: int, env: dict[str, str], endpoint: str, cpus: float | None = None
) -> dict:
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
    groups = [cpu_cgroup(f"{queue}-{k}", cpus) for k in range(workers)] if cpus else []
    for group, proc in zip(groups, procs, strict=False):
        (group / "cgroup.procs").write_text(str(proc.pid))
    try:
        time.sleep(8)  # the workers connect to the broker
        before = [proc_cpu_and_peak(p.pid)[0] for p in procs]
        others_before = server_cpu(endpoint) + services_cpu()
        sampler = BusySampler([p.pid for p in procs])
        sampler.start()
        done = subprocess.run(
            [PYTHON, "-c", _DISPATCH, pair, queue],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "backupsite.settings"},
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout)
        result.update(sampler.stop())
        usage = [proc_cpu_and_peak(p.pid) for p in procs]
        result["others_cpu_s"] = server_cpu(endpoint) + services_cpu() - others_before
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        for group in groups:
            group.rmdir()
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
    parser.add_argument(
        "--cpus-per-worker",
        type=float,
        help="cap each worker at this many cores (a cgroup CPU quota, as a container limit)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="pairs of runs (1 worker, then 2), alternated"
    )
    args = parser.parse_args()
    if args.cpus_per_worker:
        try:
            cpu_cgroup(f"bench-probe-{os.getpid()}", args.cpus_per_worker).rmdir()
        except OSError as error:
            parser.error(f"--cpus-per-worker needs root and a cgroup cpu controller: {error}")
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name, "").startswith(("postgres", "redis")):
            parser.error(f"{name} must point at PostgreSQL / Redis")
    sim, endpoint = start_s3sim(args.latency)
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        s3sim_env(endpoint),
        RECONCILE_MAX_DISCREPANCY_ROWS="1000000",
        DEBUG="false",  # as in production (see bench_scale.py)
    )
    cap = f"{args.cpus_per_worker} cores per worker" if args.cpus_per_worker else "no CPU cap"
    names = [f"src-{args.objects}-dirs", f"bak-{args.objects}-dirs"]
    listings = "prepared" if prepare_buckets(endpoint, args.objects, names) else "computed"
    print(
        f"s3sim at {endpoint}, listings {listings}; {os.cpu_count()} CPUs; {cap}; "
        f"load {os.getloadavg()}"
    )
    ratios = []
    try:
        for _ in range(args.repeat):
            walls = {}
            for workers in (1, 2):
                r = one_run(args.objects, workers, env, endpoint, args.cpus_per_worker)
                walls[workers] = r["wall_s"]
                print(
                    f"{workers} worker(s): wall {r['wall_s']:7.2f} s  CPU {r['cpu_s']:7.2f} s  "
                    f"peak RSS {r['rss_mb']:6.1f} MB  ranges {r['ranges']}  exact {r['correct']}  "
                    f"s3sim+PostgreSQL+Redis CPU {r['others_cpu_s']:6.2f} s "
                    f"({r['others_cpu_s'] / r['wall_s']:.2f} cores)\n"
                    f"  while every worker was at work ({r['all_at_work_s']:.1f} s): "
                    f"machine busy {r['machine_cores']:.2f} of {os.cpu_count()} cores, "
                    f"the workers {r['worker_cores']:.2f}"
                    + (f"  error {r['error']}" if r["error"] else ""),
                    flush=True,
                )
            ratios.append(walls[2] / walls[1])
            print(f"2 workers / 1 worker wall: {ratios[-1]:.2f}", flush=True)
    finally:
        sim.terminate()
        sim.wait()
    if len(ratios) > 1:
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"2 workers / 1 worker wall, median of {len(ratios)}: {median(ratios):.2f} ({listed})"
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

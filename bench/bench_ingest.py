"""Throughput and latency of POST /api/v1/events, served by gunicorn against PostgreSQL.

    .venv/bin/python bench/bench_ingest.py [--seconds 20] [--clients 12] [--workers 3] [--threads 4]

What it does:
1. recreates a PostgreSQL database of its own (default ``bench_ingest`` on 127.0.0.1, user
   postgres) and migrates it;
2. registers a pair and an ingest key;
3. starts gunicorn (gthread workers, so clients keep their connections alive);
4. from this process, which is not gunicorn's, runs ``--clients`` load processes, each with
   one keep-alive connection and one request in flight, posting pre-signed bodies of unique
   events: after two uncounted seconds warming the server up, first one event per post,
   then 100 per post;
5. prints events/s, p50/p99 request latency and the server's CPU per post (gunicorn and
   PostgreSQL) for each, and checks that every event was answered 202 and stored;
6. measures, in the same run and on the same gunicorn, a floor: the same posts to
   /bench/floor (bench/floor_wsgi.py), which checks the signature and parses the body like
   ingest but never touches the database, and prints ingest / floor for single and batched
   posts. The ratio travels between machines better than the absolute figures.

Not a test: it takes a minute and measures a shared machine. Numbers drift from run to run;
compare figures from one run.
"""

import argparse
import functools
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))  # for replication.ingest.signing, when run as bench/bench_ingest.py
SOURCE, BACKUP = "bench-src", "bench-bak"
FLOOR = "/bench/floor"


def psql(sql: str, host: str, user: str) -> None:
    subprocess.run(
        ["psql", "-h", host, "-U", user, "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def prepare_database(url: str, name: str, host: str, user: str) -> tuple[str, str]:
    psql(f'DROP DATABASE IF EXISTS "{name}"', host, user)
    psql(f'CREATE DATABASE "{name}"', host, user)
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    seed = (
        "from replication.models import BucketPair, IngestKey\n"
        f"BucketPair.objects.create(name='bench', source_bucket='{SOURCE}', "
        f"backup_bucket='{BACKUP}')\n"
        "k = IngestKey.objects.create(name='bench')\n"
        "print(k.key_id, k.secret)\n"
    )
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", seed],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return out[-2], out[-1]


def start_gunicorn(
    url: str, port: int, workers: int, threads: int, secret: str
) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    env["BENCH_FLOOR_SECRET"] = secret
    server = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "bench.floor_wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def make_bodies(run: str, client: int, count: int, per_post: int, key_id: str, secret: str):
    # Imported here so the load processes need no Django.
    from replication.ingest.signing import sign

    timestamp = str(int(time.time()))
    bodies = []
    for n in range(count):
        events = [
            {
                "source_bucket": SOURCE,
                "destination_bucket": BACKUP,
                "key": f"{run}/{client}/{n}/{i}.bin",
                "version_id": None,
                "event_name": "ObjectCreated:Put",
                "event_time": "2026-11-27T12:00:00.000Z",
                "sequencer": f"{n * per_post + i:018X}",
                "size": 4096,
                "etag": '"0f343b0931126a20f133d67c2b018a3b"',
                "status": "copied",
                "error_code": None,
                "error_message": None,
                "started_at": "2026-11-27T12:00:00.200Z",
                "finished_at": "2026-11-27T12:00:00.450Z",
                "request_id": f"r-{n}",
                "attempt": 1,
            }
            for i in range(per_post)
        ]
        raw = json.dumps({"events": events}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Backup-Key": key_id,
            "X-Backup-Timestamp": timestamp,
            "X-Backup-Signature": sign(secret, timestamp, raw),
        }
        bodies.append((raw, headers))
    return bodies


def load(args) -> dict:
    client, port, seconds, per_post, key_id, secret, start_at, run, budget, url = args
    bodies = make_bodies(run, client, budget, per_post, key_id, secret)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, accepted, other = [], 0, {}
    late = max(0.0, time.time() - start_at)  # signing took longer than the lead time
    while time.time() < start_at:
        time.sleep(0.001)
    stop = start_at + seconds
    for raw, headers in bodies:
        if time.time() >= stop:
            break
        began = time.perf_counter()
        conn.request("POST", url, body=raw, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - began)
        if response.status == 202:
            accepted += json.loads(payload)["accepted"]
        else:
            other[response.status] = other.get(response.status, 0) + 1
    return {
        "latencies": latencies,
        "accepted": accepted,
        "other": other,
        "ran_out": len(latencies) == len(bodies),
        "late_s": late,
    }


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def server_cpu(
    server: subprocess.Popen, database: str, host: str, user: str
) -> dict[tuple[str, int], float]:
    """CPU seconds used so far by each gunicorn process ("web") and each PostgreSQL backend
    serving them ("database"), by (role, pid).

    On a shared machine, events per CPU-second is the figure that does not depend on what
    the neighbours run.
    """
    workers = [
        int(pid)
        for pid in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    ]
    backends = subprocess.run(
        [
            "psql",
            "-h",
            host,
            "-U",
            user,
            "-d",
            "postgres",
            "-Atc",
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'",  # noqa: S608 (our own --database)
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        **{("web", pid): _cpu_seconds(pid) for pid in [server.pid, *workers]},
        **{("database", pid): _cpu_seconds(pid) for pid in map(int, backends)},
    }


def measure(
    label, port, clients, seconds, per_post, key_id, secret, budget, cpu, url="/api/v1/events"
) -> dict:
    run = f"{label}-{uuid.uuid4().hex[:6]}"
    cpu_before = cpu()
    # Time to pre-sign the bodies, generous for a loaded machine; "late_s" shows if not.
    start_at = time.time() + 5 + budget * per_post / 2_000
    jobs = [
        (c, port, seconds, per_post, key_id, secret, start_at, run, budget, url)
        for c in range(clients)
    ]
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(load, jobs)
    cpu_after = cpu()
    used = {"web": 0.0, "database": 0.0}
    for (role, pid), t in cpu_after.items():
        used[role] += t - cpu_before.get((role, pid), 0.0)
    cpu_used = sum(used.values())
    latencies = sorted(x for r in results for x in r["latencies"])
    accepted = sum(r["accepted"] for r in results)
    errors: dict = {}
    for r in results:
        for status, count in r["other"].items():
            errors[status] = errors.get(status, 0) + count
    quantiles = statistics.quantiles(latencies, n=100)
    figures = {
        "mode": label,
        "events_per_post": per_post,
        "clients": clients,
        "posts": len(latencies),
        "events_accepted": accepted,
        "events_per_s": round(accepted / seconds),
        "posts_per_s": round(len(latencies) / seconds),
        "p50_ms": round(quantiles[49] * 1000, 1),
        "p99_ms": round(quantiles[98] * 1000, 1),
        "server_cpu_s": round(cpu_used, 1),
        "events_per_server_cpu_s": round(accepted / cpu_used) if cpu_used else None,
        # Where the server's CPU went, per post: gunicorn (Django) and PostgreSQL.
        "web_cpu_ms_per_post": round(used["web"] * 1000 / len(latencies), 3),
        "database_cpu_ms_per_post": round(used["database"] * 1000 / len(latencies), 3),
        "non_202": errors,
        "ran_out_of_bodies": any(r["ran_out"] for r in results),
        "latest_client_start_s": round(max(r["late_s"] for r in results), 2),
    }
    print(json.dumps(figures), flush=True)
    return figures


def _cpu_per_post(figures: dict) -> str:
    web, database = figures["web_cpu_ms_per_post"], figures["database_cpu_ms_per_post"]
    return f"{web + database:.2f} ms (gunicorn {web:.2f}, PostgreSQL {database:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--database", default="bench_ingest")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    url = f"postgres://{args.user}@{args.host}:5432/{args.database}"
    key_id, secret = prepare_database(url, args.database, args.host, args.user)
    server = start_gunicorn(url, args.port, args.workers, args.threads, secret)
    try:
        load_before = os.getloadavg()
        common = (args.port, args.clients, args.seconds)
        cpu = functools.partial(server_cpu, server, args.database, args.host, args.user)
        # Not counted: a worker's first posts import what Django loads lazily, fill the ORM's
        # caches, open its threads' database connections and prepare ingest's statement. A
        # server in service has done all that; measured, it fell on the first mode alone.
        warm_up = [
            measure("warm-up", args.port, args.clients, 2, 1, key_id, secret, 3000, cpu, url)
            for url in ("/api/v1/events", FLOOR)
        ]
        single = measure("single", *common, 1, key_id, secret, int(args.seconds * 1500), cpu)
        single_floor = measure(
            "single-floor", *common, 1, key_id, secret, int(args.seconds * 3000), cpu, FLOOR
        )
        batched = measure("batch100", *common, 100, key_id, secret, int(args.seconds * 80), cpu)
        batched_floor = measure(
            "batch100-floor", *common, 100, key_id, secret, int(args.seconds * 160), cpu, FLOOR
        )
        stored = subprocess.run(
            [
                "psql",
                "-h",
                args.host,
                "-U",
                args.user,
                "-d",
                args.database,
                "-Atc",
                "SELECT count(*) FROM replication_copyevent",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        accepted = warm_up[0]["events_accepted"] + single["events_accepted"]
        accepted += batched["events_accepted"]
        print(
            f"stored events: {stored} (accepted {accepted});"
            f" load average before: {' '.join(f'{x:.2f}' for x in load_before)},"
            f" after: {' '.join(f'{x:.2f}' for x in os.getloadavg())};"
            f" cores: {os.cpu_count()}"
        )
        for figures, floor in ((single, single_floor), (batched, batched_floor)):
            ratio = figures["events_per_s"] / floor["events_per_s"] if floor["events_per_s"] else 0
            print(
                f"{figures['mode']}: ingest {figures['events_per_s']} events/s, floor "
                f"{floor['events_per_s']} events/s, ingest/floor {ratio:.2f}"
            )
            print(
                f"{figures['mode']}: server CPU per post: ingest {_cpu_per_post(figures)}, "
                f"floor {_cpu_per_post(floor)}"
            )
        for figures, target in ((single, 1_000), (batched, 20_000)):
            rate = figures["events_per_s"]
            verdict = "meets" if rate >= target else "MISSES"
            print(f"{figures['mode']}: {rate} events/s {verdict} the {target} target")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

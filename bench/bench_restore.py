"""Benchmark: restore copies against a bare boto3 loop, and the restore's planning memory.

    .venv/bin/python -u bench/bench_restore.py --copies 10000 [--threads 16] [--rounds 3]
    .venv/bin/python -u bench/bench_restore.py --plan-keys 300000

``--copies N``: a moto server (``moto.server.ThreadedMotoServer`` in a process of its own)
holds a versioned backup bucket of N small objects, each overwritten once (two versions a
key). Measured in turns, each into a fresh target bucket, with the same number of threads:

  bare        boto3: list_object_versions pages, then one copy_object per key of the version
              current at the time, in a thread pool (no verification)
  bare+head   the same, plus a HEAD of each copy (what a restore would pay to verify by HEAD)
  lambda-copy the bare loop with the Lambda's CopyObject (CopySourceIfMatch, metadata and
              tagging directives), as the restore copies: the job's own cost is what is left
  restore     the restore job (replication/restore/job.py): the same listing and copies,
              each proven by its copy's response, every outcome row written to the database

and prints each one's median wall time and the ratio restore / bare. The restore's own plan
pass (what the command shows before it starts) is timed apart.

``--plan-keys K``: s3sim (bench/s3sim.py, 40 ms a request) serves ``ver-K-dirs``: K keys of
three versions each, a delete marker on every tenth. The restore's plan streams it (through the
lean parser, or botocore's with ``--botocore``) and the process's RSS is printed every
100,000 keys: flat means memory does not grow with the bucket.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable

from bench_scale import s3sim_env, start_s3sim  # noqa: E402  (bench/ by path)

TURNS = ("bare", "bare+head", "bare-stream", "lambda-copy", "restore")
BACKUP = "bench-backup"
SOURCE = "bench-source"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=0, help="objects restored (moto)")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--turns",
        default=",".join(TURNS),
        help=f"which turns, comma-separated (bare and restore always): {','.join(TURNS)}",
    )
    parser.add_argument("--plan-keys", type=int, default=0, help="keys planned (s3sim)")
    parser.add_argument(
        "--botocore", action="store_true", help="plan through botocore's parser, not the lean one"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    if args.copies:
        turns = {"bare", "restore", *args.turns.split(",")}
        unknown = turns - set(TURNS)
        if unknown:
            parser.error(f"no turn named {', '.join(sorted(unknown))}")
        modes = [name for name in TURNS if name in turns]
        bench_copies(args.copies, args.threads, args.rounds, workdir, modes)
    if args.plan_keys:
        bench_planning(args.plan_keys, workdir, lean=not args.botocore)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _django(endpoint: str, workdir: Path) -> None:
    os.environ.update(
        s3sim_env(endpoint),
        DJANGO_SETTINGS_MODULE="backupsite.settings",
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL")
        or f"sqlite:///{workdir / 'bench.sqlite3'}",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def bench_copies(n: int, threads: int, rounds: int, workdir: Path, modes: list[str]) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [PYTHON, "-c", _MOTO_SERVER, str(port), str(n)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # werkzeug's line per request would cost the server CPU
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port)
        _django(endpoint, workdir)
        _copies(n, threads, rounds, endpoint, server.pid, modes)
    finally:
        server.terminate()
        server.wait()


# The moto server, its backup bucket filled in its own process before it serves (20,000 PUTs
# over HTTP took minutes): N keys, each written twice.
_MOTO_SERVER = f"""
import sys, time
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

port, n = int(sys.argv[1]), int(sys.argv[2])
backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
backend.create_bucket("{BACKUP}", "us-east-1")
backend.create_bucket("{SOURCE}", "us-east-1")
backend.put_bucket_versioning("{BACKUP}", "Enabled")
for body in (b"first version", b"second version, the one restored"):
    for i in range(n):
        backend.put_object("{BACKUP}", f"data/{{i // 1000:03d}}/{{i:06d}}.txt", body * 20)
ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
time.sleep(10**6)
"""


def _wait_for(port: int) -> None:
    for _ in range(3000):  # it fills the backup bucket first
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the moto server did not start")


def _copies(
    n: int, threads: int, rounds: int, endpoint: str, server_pid: int, modes: list[str]
) -> None:
    from django.conf import settings

    from replication import s3 as s3_clients
    from replication.lambda_function import _single_copy
    from replication.models import BucketPair
    from replication.restore import job as restores

    settings.RESTORE_THREADS = threads
    s3 = s3_clients.client()
    print(f"moto at {endpoint}: {n:,} keys x 2 versions")
    pair = BucketPair.objects.create(name="bench", source_bucket=SOURCE, backup_bucket=BACKUP)
    at = datetime.now(UTC)

    def target(name: str, r: int) -> str:
        bucket = f"restore-{name.replace('+', '-')}-{r}"
        s3.create_bucket(Bucket=bucket)
        return bucket

    def empty(bucket: str) -> None:
        # Each turn starts on the same moto: a backup bucket and nothing else (moto's costs
        # grow with what it holds, so the turn that ran last would otherwise pay more).
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)

    def versions_pages():
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=BACKUP):
            yield [v for v in page.get("Versions", ()) if v["IsLatest"]]

    def bare(bucket: str, head: bool, lambda_copy: bool = False, stream: bool = False) -> None:
        def copy(v):
            key = v["Key"]
            source = {"Bucket": BACKUP, "Key": key, "VersionId": v["VersionId"]}
            if lambda_copy:  # the Lambda's CopyObject: IfMatch, metadata and tags directives
                _single_copy(s3, source, bucket, key, v["ETag"], None)
            else:
                s3.copy_object(Bucket=bucket, Key=key, CopySource=source)
            if head:
                s3.head_object(Bucket=bucket, Key=key)

        with ThreadPoolExecutor(threads) as pool:
            if stream:  # each page's copies start as the page arrives, as the restore's do
                futures = [pool.submit(copy, v) for page in versions_pages() for v in page]
                for future in futures:
                    future.result()
            else:  # the whole listing first, then the copies
                began = time.perf_counter()
                latest = [v for page in versions_pages() for v in page]
                listing[bucket] = time.perf_counter() - began
                list(pool.map(copy, latest))

    plan_times = []
    listing: dict[str, float] = {}

    def restore(bucket: str) -> None:
        request = restores.make_request(pair, at=at, to=bucket)
        began = time.perf_counter()
        totals = restores.count_plan(s3, request)
        plan_times.append(time.perf_counter() - began)
        job = restores.create_job(request, totals)
        began, cpu = time.perf_counter(), _cpu_s(server_pid)
        job = restores.run_job(job.pk, s3=s3, threads=threads)
        times["restore"].append(time.perf_counter() - began)
        cpus["restore"].append(cpu)
        assert job.status == "succeeded" and job.restored == n, (job.status, job.error)

    times: dict[str, list[float]] = {name: [] for name in modes}
    # CPU seconds of this process and of the moto server over each turn.
    cpus: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    for r in range(rounds):
        for name in modes:
            bucket = target(name, r)
            began, cpu = time.perf_counter(), _cpu_s(server_pid)
            if name == "restore":
                restore(bucket)
                began, cpu = None, cpus[name].pop()
            else:
                bare(
                    bucket,
                    head=name == "bare+head",
                    lambda_copy=name == "lambda-copy",
                    stream=name == "bare-stream",
                )
                times[name].append(time.perf_counter() - began)
            after = _cpu_s(server_pid)
            cpus[name].append((after[0] - cpu[0], after[1] - cpu[1]))
            empty(bucket)
            here, moto = cpus[name][-1]
            print(
                f"  round {r + 1} {name:<11} {times[name][-1]:7.2f} s  cpu: this process "
                f"{here:6.2f} s, moto {moto:6.2f} s"
                + (f"  (listing {listing[bucket]:.2f} s)" if bucket in listing else ""),
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{n:,} objects, {threads} threads, {rounds} rounds (median wall time, cpu):")
    for name, value in medians.items():
        here = statistics.median(c[0] for c in cpus[name])
        moto = statistics.median(c[1] for c in cpus[name])
        print(
            f"  {name:<11} {value:7.2f} s  {n / value:8.0f} objects/s  "
            f"cpu {here:6.2f} s here, {moto:6.2f} s moto"
        )
    print(f"  ratio restore / bare      {medians['restore'] / medians['bare']:.2f}")
    for name in ("bare+head", "bare-stream"):
        if name in medians:
            print(f"  ratio {name + ' / bare':<19} {medians[name] / medians['bare']:.2f}")
    print(f"  the restore's plan pass   {statistics.median(plan_times):7.2f} s (apart)")


def _cpu_s(server_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by this process and by the moto server's."""
    with open(f"/proc/{server_pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return time.process_time(), (int(fields[11]) + int(fields[12])) / ticks


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def bench_planning(keys: int, workdir: Path, lean: bool = True) -> None:
    sim, endpoint = start_s3sim(0.040)
    try:
        _django(endpoint, workdir)
        from replication import s3 as s3_clients
        from replication.models import BucketPair
        from replication.restore import job as restores
        from replication.restore.plan import Target, Totals

        pair = BucketPair(name="plan", source_bucket="src-1", backup_bucket=f"ver-{keys}-dirs")
        request = restores.Request(
            pair, datetime(2026, 1, 2, 12, tzinfo=UTC), "", Target("elsewhere", "")
        )
        s3 = s3_clients.listing_client() if lean else s3_clients.client()
        totals = Totals()
        began = time.perf_counter()
        parser = "lean parser" if lean else "botocore's parser"
        print(f"s3sim at {endpoint}; ver-{keys}-dirs: {keys:,} keys x 3 versions; {parser}")
        print(f"{'keys':>10} {'rss MB':>8} {'s':>8}")
        for n, _ in enumerate(restores.choices(s3, request, totals), start=1):
            if n % 100_000 == 0:
                print(f"{n:10,} {_rss_mb():8.1f} {time.perf_counter() - began:8.1f}", flush=True)
        elapsed = time.perf_counter() - began
        print(
            f"planned {keys:,} keys in {elapsed:.1f} s ({keys / elapsed:,.0f} keys/s): "
            f"{totals.objects:,} objects, {totals.deleted:,} deleted, {totals.absent:,} absent; "
            f"rss at the end {_rss_mb():.1f} MB"
        )
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()

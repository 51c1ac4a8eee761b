"""Benchmark: `manage.py reconcile` against its floor and against rclone, on a moto S3 server.

    .venv/bin/python bench/bench_reconcile.py --objects 10000 [--objects 100000]

For each size, fills a source and a backup bucket of N objects each with a known diff (1%
missing, 0.5% extra, 0.25% changed with the same size, 0.25% changed size), then measures,
one after the other, each as a fresh process:

  (a) floor: bare boto3 paginators listing both buckets in parallel, plus an in-memory diff;
  (b) `manage.py reconcile PAIR --json` (SQLite database in a temporary directory), the
      pair's first run, which plans its ranges, then (b2) its next run;
  (c) `rclone check --fast-list` (size and MD5/ETag; exits 1 when it finds differences).

and prints wall time, peak RSS (the measured process's own ru_maxrss), whether each found
exactly the known diff, and the ratios to the floor. The moto server runs in this process
(filling it over HTTP runs at ~150 PUT/s), so every method shares the one CPU-bound server:
compare ratios from one run, on a machine whose load you note (printed).
"""

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


# --- The data -----------------------------------------------------------------------------


def known_diff(n: int) -> dict[str, set[str]]:
    """Which keys differ, by kind; every key name is a function of its index."""
    keys = [key_name(i) for i in range(n)]
    return {
        "missing": {k for i, k in enumerate(keys) if i % 100 == 1},
        "extra": {f"zz-extra/{i:07d}.bin" for i in range(n // 200)},
        "same_size_changed": {k for i, k in enumerate(keys) if i % 400 == 2},
        "size_changed": {k for i, k in enumerate(keys) if i % 400 == 3},
    }


def key_name(i: int) -> str:
    # A spread of directories, and a few non-ASCII names to keep byte order honest.
    suffix = "\u00e9t\u00e9" if i % 997 == 0 else ""
    return f"data/{i % 50:02d}/{i:07d}{suffix}.bin"


def fill(source: str, backup: str, n: int) -> dict[str, set[str]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(source, "us-east-1")
    backend.create_bucket(backup, "us-east-1")
    diff = known_diff(n)
    for i in range(n):
        key = key_name(i)
        body = f"object {i} ".encode() * 4
        backend.put_object(source, key, body)
        if key in diff["missing"]:
            continue
        if key in diff["same_size_changed"]:
            body = body.upper()
        elif key in diff["size_changed"]:
            body += b"+"
        backend.put_object(backup, key, body)
    for key in diff["extra"]:
        backend.put_object(backup, key, b"only in the backup")
    return diff


def expected(diff: dict[str, set[str]]) -> dict[str, set[str]]:
    return {
        "missing": diff["missing"],
        "extra": diff["extra"],
        "mismatched": diff["same_size_changed"] | diff["size_changed"],
    }


# --- Measuring a child process ------------------------------------------------------------


# Linux hands a new process the peak RSS of the one that spawned it (exec records the old
# address space's high-water mark), so a child of this process, which holds the moto server
# and its objects, would report at least our size. A small launcher spawns the measured
# command instead and reports that grandchild's own peak.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
cpu = usage.ru_utime + usage.ru_stime
sys.stderr.write(f"\\n__MAXRSS_KB__ {usage.ru_maxrss} {cpu}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> dict:
    started = time.monotonic()
    done = subprocess.run(
        [PYTHON, "-c", _LAUNCHER, *command], env=env, cwd=cwd, capture_output=True, check=False
    )
    wall = time.monotonic() - started
    stderr, _, usage = done.stderr.decode(errors="replace").rpartition("\n__MAXRSS_KB__ ")
    maxrss_kb, cpu_s = usage.split() if usage.strip() else (0, 0)
    return {
        "wall_s": wall,
        "cpu_s": float(cpu_s),
        "rss_mb": int(maxrss_kb) / 1024,
        "returncode": done.returncode,
        "stdout": done.stdout.decode(errors="replace"),
        "stderr": stderr,
    }


# --- (a) the floor, run as `bench_reconcile.py floor ...` in a child process -------------


def floor_main(endpoint: str, source: str, backup: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    listings: dict[str, dict] = {}

    def list_bucket(bucket: str) -> None:
        found = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", ()):
                found[obj["Key"]] = (obj["Size"], obj["ETag"])
        listings[bucket] = found

    threads = [threading.Thread(target=list_bucket, args=(b,)) for b in (source, backup)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    src, bak = listings[source], listings[backup]
    print(
        json.dumps(
            {
                "missing": sorted(src.keys() - bak.keys()),
                "extra": sorted(bak.keys() - src.keys()),
                "mismatched": sorted(k for k in src.keys() & bak.keys() if src[k] != bak[k]),
            }
        )
    )


# --- (b) manage.py reconcile ---------------------------------------------------------------


def django_env(endpoint: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AWS_CA_BUNDLE")}
    env.update(
        DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 (moto accepts any)
        AWS_DEFAULT_REGION="us-east-1",
        EMBEDDED_S3="false",
        RECONCILE_MAX_DISCREPANCY_ROWS="1000000",  # keep every row, to check correctness
    )
    return env


# Migrate, then create any table that has no migration yet (the project's migrations are
# generated at integration; until then, the app's models would have no tables).
_SCHEMA = """
import django; django.setup()
from django.apps import apps
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
existing = set(connection.introspection.table_names())
with connection.schema_editor() as editor:
    for model in apps.get_app_config("replication").get_models():
        if model._meta.db_table not in existing:
            editor.create_model(model)
"""


def prepare_django(env: dict[str, str], pair: str, source: str, backup: str) -> None:
    env = {**env, "DJANGO_SETTINGS_MODULE": "backupsite.settings"}
    subprocess.run([PYTHON, "-c", _SCHEMA], env=env, cwd=ROOT, check=True)
    subprocess.run(
        [
            PYTHON,
            "manage.py",
            "add_pair",
            pair,
            "--source",
            source,
            "--backup",
            backup,
            "--grace",
            "0",
        ],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def reconcile_found(env: dict[str, str], run_id: int) -> dict[str, set[str]]:
    script = (
        "import json,django;django.setup();from replication.models import Discrepancy as D;"
        f"rows=D.objects.filter(run_id={run_id}).values_list('kind','key');"
        "print(json.dumps([list(r) for r in rows]))"
    )
    out = subprocess.run(
        [PYTHON, "-c", script],
        env={**env, "DJANGO_SETTINGS_MODULE": "backupsite.settings"},
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, set[str]] = {"missing": set(), "extra": set(), "mismatched": set()}
    for kind, key in json.loads(out):
        found.setdefault(kind, set()).add(key)
    return found


# --- (c) rclone -----------------------------------------------------------------------------


def rclone_env(endpoint: str) -> dict[str, str]:
    # Debian's rclone 1.60 refuses to start with AWS_CA_BUNDLE set ("unsupported transport").
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        RCLONE_CONFIG_MOTO_TYPE="s3",
        RCLONE_CONFIG_MOTO_PROVIDER="Other",
        RCLONE_CONFIG_MOTO_ENDPOINT=endpoint,
        RCLONE_CONFIG_MOTO_ACCESS_KEY_ID="testing",
        RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY="testing",  # noqa: S106 (moto accepts any)
        RCLONE_CONFIG_MOTO_REGION="us-east-1",
        RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE="true",
    )
    return env


def rclone_found(combined: Path) -> dict[str, set[str]]:
    marks = {"+": "missing", "-": "extra", "*": "mismatched"}
    found: dict[str, set[str]] = {kind: set() for kind in marks.values()}
    for line in combined.read_text(encoding="utf-8").splitlines():
        mark, _, key = line.partition(" ")
        if mark in marks:
            found[marks[mark]].add(key)
    return found


# --- One size -------------------------------------------------------------------------------


def bench_size(n: int, endpoint: str, workdir: Path) -> list[dict]:
    source, backup = f"bench-src-{n}", f"bench-bak-{n}"
    started = time.monotonic()
    want = expected(fill(source, backup, n))
    print(f"\n== {n:,} objects per side (filled in {time.monotonic() - started:.1f} s) ==")
    results = []

    floor = measure([PYTHON, __file__, "floor", endpoint, source, backup], os.environ.copy())
    got = {k: set(v) for k, v in json.loads(floor["stdout"]).items()} if floor["stdout"] else {}
    if floor["returncode"]:
        print(f"floor failed: {floor['stderr'].strip()[-500:]}")
    results.append(row("(a) floor: boto3 paginators, both in parallel", floor, got == want))

    env = django_env(endpoint, workdir)
    pair = f"bench-{n}"
    prepare_django(env, pair, source, backup)
    # A pair's first run plans its ranges (probes of the source's key space); the next one
    # starts from what the first found, as every scheduled run after it does.
    for name in ("(b) manage.py reconcile --json", "(b2) the same, the pair's next run"):
        ours = measure([PYTHON, "manage.py", "reconcile", pair, "--json"], env)
        if ours["returncode"] == 0:
            summary = json.loads(ours["stdout"])
            correct = reconcile_found(env, summary["run"]) == want and summary["unverified"] == 0
        else:
            correct = False
            print(f"reconcile failed: {ours['stderr'].strip()[-500:]}")
        results.append(row(name, ours, correct))

    if shutil.which("rclone"):
        combined = workdir / f"rclone-{n}.txt"
        command = ["rclone", "check", "--fast-list", "--combined", str(combined)]
        command += [f"moto:{source}", f"moto:{backup}"]
        theirs = measure(command, rclone_env(endpoint))
        ok = theirs["returncode"] in (0, 1) and combined.exists()
        correct = ok and rclone_found(combined) == want
        if not ok:
            print(f"rclone failed: {theirs['stderr'].strip()[-500:]}")
        results.append(row("(c) rclone check --fast-list", theirs, correct))
    else:
        print("(c) rclone is NOT INSTALLED: skipped (apt-get install -y rclone)")
        results.append(None)

    print_table(results)
    return results


def row(name: str, measured: dict, correct: bool) -> dict:
    return {"name": name, **measured, "correct": correct}


def print_table(results: list[dict | None]) -> None:
    floor = results[0]["wall_s"]
    print(
        f"{'method':<48} {'wall s':>8} {'x floor':>8} {'CPU s':>6} {'peak RSS MB':>12}  exact diff"
    )
    for r in results:
        if r is None:
            print(f"{'(c) rclone check --fast-list':<48} {'not installed':>8}")
            continue
        print(
            f"{r['name']:<48} {r['wall_s']:8.2f} {r['wall_s'] / floor:8.2f} {r['cpu_s']:6.2f} "
            f"{r['rss_mb']:12.1f}  {'yes' if r['correct'] else 'NO'}"
        )
    ours, rclone = results[1], results[-1]
    if rclone:
        print(f"reconcile / rclone wall time: {ours['wall_s'] / rclone['wall_s']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, action="append", help="objects per side")
    args = parser.parse_args()
    sizes = args.objects or [10_000]

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    # moto accepts any credentials; boto3 and rclone insist on having some.
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"  # noqa: S105
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    print(f"moto server at {endpoint}; {os.cpu_count()} CPUs; load {os.getloadavg()}")
    if not shutil.which("rclone"):
        print("WARNING: rclone is not installed; (c) will be skipped")
    all_results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
            for n in sizes:
                all_results[n] = bench_size(n, endpoint, Path(tmp))
    finally:
        server.stop()
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        growth = all_results[large][1]["rss_mb"] - all_results[small][1]["rss_mb"]
        print(f"\nreconcile peak RSS growth {small:,} -> {large:,} objects: {growth:+.1f} MB")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        floor_main(*sys.argv[2:5])
    else:
        main()

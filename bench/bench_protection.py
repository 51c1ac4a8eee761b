"""Benchmark: the hourly protection checks of many pairs against moto, one process.

    .venv/bin/python bench/bench_protection.py [--pairs 500]

What it does: starts a moto S3 server on a free port (every check is an HTTP request, as
against S3), creates a source and a backup bucket per pair (a third protected, a third with
a lifecycle rule and a bucket policy, a third bare), registers the pairs in a fresh SQLite
database, then runs ``check_all_protection`` (in-process, as without a broker: one pair
after another) and prints the time, the time per pair, and the S3 calls per pair, counted
at the client; of the time, how much went to reading S3 and how much to evaluating the
pair's health after its checks (which each task does, so that a change alerts at once).
Not a test: it measures a shared machine.
"""

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    database = Path(tempfile.mkdtemp()) / "bench_protection.sqlite3"
    os.environ.update(
        DATABASE_URL=f"sqlite:///{database}",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106  (moto's)
        EMBEDDED_S3="false",
        DJANGO_SETTINGS_MODULE="backupsite.settings",
    )
    os.environ.pop("REDIS_URL", None)  # tasks run in this process
    import django

    django.setup()
    from django.core.management import call_command

    from replication import s3
    from replication.models import BucketPair, ProtectionResult
    from replication.protection import posture, tasks
    from replication.protection.local import protect_bucket

    try:
        call_command("migrate", verbosity=0)
        client = s3.client()
        started = time.perf_counter()
        for n in range(args.pairs):
            source, backup = f"bench-src-{n:04d}", f"bench-bak-{n:04d}"
            client.create_bucket(Bucket=source)
            client.create_bucket(Bucket=backup)
            if n % 3 == 0:
                protect_bucket(client, source, versioning=False)
                protect_bucket(client, backup)
            elif n % 3 == 1:
                protect_bucket(client, backup)
                client.put_bucket_lifecycle_configuration(
                    Bucket=backup,
                    LifecycleConfiguration={
                        "Rules": [
                            {
                                "ID": "short",
                                "Status": "Enabled",
                                "Filter": {"Prefix": ""},
                                "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                            }
                        ]
                    },
                )
                client.put_bucket_policy(
                    Bucket=backup,
                    Policy=json.dumps(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Deny",
                                    "Principal": "*",
                                    "Action": "s3:*",
                                    "Resource": f"arn:aws:s3:::{backup}/*",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            ],
                        }
                    ),
                )
            BucketPair.objects.create(
                name=f"bench-{n:04d}", source_bucket=source, backup_bucket=backup
            )
        setup = time.perf_counter() - started
        print(f"setup: {args.pairs} pairs, {2 * args.pairs} buckets in {setup:.1f} s")

        logging.disable(logging.INFO)  # a line per task otherwise
        spent: Counter = Counter()

        def timed(name, function):
            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return function(*a, **k)
                finally:
                    spent[name] += time.perf_counter() - t

            return wrapper

        posture.read_settings = timed("reading S3", posture.read_settings)
        tasks.evaluate_after_checks = timed("evaluating health", tasks.evaluate_after_checks)
        calls: Counter = Counter()
        client.meta.events.register(
            "before-call.s3.*", lambda model, **_: calls.update([model.name])
        )
        started = time.perf_counter()
        checked = tasks.check_all_protection()
        elapsed = time.perf_counter() - started
        states = Counter(
            ProtectionResult.objects.filter(is_latest=True).values_list("state", flat=True)
        )
        total = sum(calls.values())
        print(
            f"checked {checked} pairs in {elapsed:.1f} s: "
            f"{1000 * elapsed / checked:.1f} ms a pair, "
            f"{total / checked:.1f} S3 calls a pair ({total} in all)"
        )
        print("of which:", ", ".join(f"{name} {t:.1f} s" for name, t in spent.items()))
        print("calls:", ", ".join(f"{name} {n}" for name, n in sorted(calls.items())))
        load = os.getloadavg()
        loads = " ".join(f"{value:.2f}" for value in load)
        print(f"machine: {os.cpu_count()} cores, load average {loads}")
        print("results:", ", ".join(f"{state} {n}" for state, n in sorted(states.items())))
    finally:
        server.stop()


if __name__ == "__main__":
    main()

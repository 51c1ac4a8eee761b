"""Benchmark: the Lambda handler's time per record against a bare boto3 copy_object, and
what the destructive-change guard adds to its warm path.

Not a test: it prints figures. Both sides run in the same process, against the same
in-process moto S3 server, on the same objects, interleaved record by record so that load
from other programs on the machine weighs on both alike. Compare the ratio, not the absolute
times.

Then the handler runs against a stand-in for the site (holds and reports, on loopback) for
``--guard-seconds``, and the bench counts, per object, the guard's HTTP lookups and the S3
requests: no added S3 request while no hold exists, and at most one lookup per 15 s per
container. For scale, the same counts with a hold on another pair and on this one.

    .venv/bin/python bench/bench_lambda.py [--objects 1000] [--size 1024] [--guard-seconds 31]
        [--port 0]
"""

import argparse
import json
import logging
import math
import os
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moto.server import ThreadedMotoServer

from replication import lambda_function

SOURCE, BARE, SAME, HANDLED, GUARD, WATCHED = (
    "bench-src",
    "bench-bare",
    "bench-same-args",
    "bench-handled",
    "bench-guard",
    "bench-watched",
)


class InstantS3:
    """Answers the handler's one request at once: what is left is the handler's own code."""

    def copy_object(self, **params):
        return {"CopyObjectResult": {"ETag": params["CopySourceIfMatch"]}}


class Context:
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """The site as the handler meets it: GET /api/v1/guard answers ``holds``, reports are
    taken (202). Counts each request by method and path."""

    def __init__(self, port: int):
        self.holds: list[dict] = []
        self.requests: Counter = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.requests["GET " + self.path] += 1
                self._answer(200, {"holds": site.holds})

            def do_POST(self):
                site.requests["POST " + self.path] += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(202, {"accepted": 1, "duplicates": 0, "rejected": []})

            def _answer(self, status: int, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def lookups(self) -> int:
        return self.requests["GET /api/v1/guard"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class S3Requests:
    """Counts the HTTP requests a client sends to S3 (retries included)."""

    def __init__(self, client):
        self.n = 0
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, **_) -> None:
        self.n += 1


def warm_path(site: Site, s3_requests: S3Requests, events: list[dict], seconds: float, context):
    """Invoke the handler with ``events`` in turn (at least once each) for ``seconds``: one
    container, warm. Returns (invocations, S3 requests, guard lookups, held, elapsed s)."""
    lookups_before, s3_before = site.lookups, s3_requests.n
    invocations = held = 0
    started = time.monotonic()
    while invocations < len(events) or time.monotonic() - started < seconds:
        result = lambda_function.lambda_handler(events[invocations % len(events)], context)
        held += result["held"]
        invocations += 1
    elapsed = time.monotonic() - started
    return (
        invocations,
        s3_requests.n - s3_before,
        site.lookups - lookups_before,
        held,
        elapsed,
    )


def notification(key: str, etag: str, size: int, sequencer: int) -> dict:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-27T12:00:00.000Z",
        "s3": {
            "bucket": {"name": SOURCE},
            "object": {
                "key": key,
                "eTag": etag.strip('"'),
                "size": size,
                "sequencer": f"{sequencer:018X}",
            },
        },
    }
    return {"Records": [record]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per object")
    parser.add_argument(
        "--guard-seconds",
        type=float,
        default=31,
        help="how long the warm path runs with the site answering (over two 15 s caches)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="moto's port; the site's is the next (0: any free)"
    )
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    # One JSON line per record from the handler: not the figures this bench prints.
    logging.getLogger(lambda_function.__name__).setLevel(logging.WARNING)
    port = args.port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 (moto accepts any credentials)
        AWS_DEFAULT_REGION="us-east-1",
    )
    for name in ("REPORT_URL", "REPLICATION_MAP", "SOURCE_PREFIX", "DESTINATION_PREFIX"):
        os.environ.pop(name, None)
    os.environ["DESTINATION_BUCKET"] = HANDLED
    # The handler's own client (standard retries, timeouts) for every side of the comparison.
    s3 = lambda_function.s3_client()
    s3_requests = S3Requests(s3)
    for bucket in (SOURCE, BARE, SAME, HANDLED, GUARD, WATCHED):
        s3.create_bucket(Bucket=bucket)

    keys = [f"photos/2026/{i:05d} img.jpg" for i in range(args.objects)]
    body = os.urandom(args.size)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        etags = list(
            pool.map(lambda k: s3.put_object(Bucket=SOURCE, Key=k, Body=body)["ETag"], keys)
        )
    fill_s = time.perf_counter() - started

    context = Context()
    bare, same, handled, guard = [], [], [], []
    handler_s3_requests = 0
    for i, (key, etag) in enumerate(zip(keys, etags, strict=True)):
        # Alternate which side goes first, so neither always meets a warmer server.
        sides = ["bare", "same", "handler", "guard"]
        if i % 2:
            sides.reverse()
        for side in sides:
            t0 = time.perf_counter()
            if side == "bare":
                s3.copy_object(Bucket=BARE, Key=key, CopySource={"Bucket": SOURCE, "Key": key})
                bare.append(time.perf_counter() - t0)
            elif side == "same":
                # The request the handler sends, without the handler around it.
                s3.copy_object(
                    Bucket=SAME,
                    Key=key,
                    CopySource={"Bucket": SOURCE, "Key": key},
                    CopySourceIfMatch=etag,
                    MetadataDirective="COPY",
                    TaggingDirective="COPY",
                )
                same.append(time.perf_counter() - t0)
            elif side == "handler":
                event = notification(key.replace(" ", "+"), etag, args.size, i + 1)
                before = s3_requests.n
                result = lambda_function.lambda_handler(event, context)
                handled.append(time.perf_counter() - t0)
                handler_s3_requests += s3_requests.n - before
                assert result["copied"] == 1, result
            else:
                # For scale: a HEAD with IfMatch, the request a HEAD-first guard would add.
                s3.head_object(Bucket=SOURCE, Key=key, IfMatch=etag)
                guard.append(time.perf_counter() - t0)

    copied = s3.list_objects_v2(Bucket=HANDLED)["KeyCount"]

    # The warm path with the site answering: lookups of the holds, reports, S3 requests.
    site = Site(port + 1 if args.port else 0)
    os.environ.update(
        DESTINATION_BUCKET=WATCHED,
        REPORT_URL=f"{site.url}/api/v1/events",
        REPORT_KEY_ID="bench",
        REPORT_SECRET="bench",  # noqa: S106 (the stand-in checks no signature)
    )
    events = [
        notification(key.replace(" ", "+"), etag, args.size, i + 1)
        for i, (key, etag) in enumerate(zip(keys, etags, strict=True))
    ]
    lambda_function._holds = None  # a fresh container
    no_hold = warm_path(site, s3_requests, events, args.guard_seconds, context)
    reports = site.requests["POST /api/v1/events"]
    site.holds = [{"pair": "other", "source": "elsewhere/", "backup": "elsewhere-bak/"}]
    lambda_function._holds = None
    held_elsewhere = warm_path(site, s3_requests, events, 0, context)
    site.holds = [{"pair": "bench", "source": f"{SOURCE}/", "backup": f"{WATCHED}/"}]
    lambda_function._holds = None
    held_here = warm_path(site, s3_requests, events, 0, context)
    site.stop()
    server.stop()
    for name in ("REPORT_URL", "REPORT_KEY_ID", "REPORT_SECRET"):
        os.environ.pop(name, None)
    os.environ["DESTINATION_BUCKET"] = HANDLED

    config = lambda_function.load_config(os.environ)
    event = notification("photos/2026/00001+img.jpg", etags[0], args.size, 1)
    rounds = 20_000
    t0 = time.perf_counter()
    for _ in range(rounds):
        lambda_function.handle(event, context, s3=InstantS3(), config=config)
    own_us = (time.perf_counter() - t0) / rounds * 1e6

    def ms(values: list[float]) -> str:
        return (
            f"mean {statistics.mean(values) * 1000:6.2f} ms   "
            f"median {statistics.median(values) * 1000:6.2f} ms   "
            f"total {sum(values):6.2f} s"
        )

    load = os.getloadavg()
    print(
        f"objects: {args.objects} x {args.size} B, filled in {fill_s:.1f} s; "
        f"handler copied {copied}"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"bare copy_object          {ms(bare)}")
    print(f"copy_object, handler args {ms(same)}")
    print(f"HEAD IfMatch (for scale)  {ms(guard)}")
    print(f"handler, one record each  {ms(handled)}")
    ratio = sum(handled) / sum(bare)
    median_ratio = statistics.median(handled) / statistics.median(bare)
    print(f"S3 requests per record, handler   {handler_s3_requests / len(handled):.2f}")
    print(f"ratio handler / bare copy (totals):  {ratio:.3f}  (target <= 1.10)")
    print(f"ratio handler / bare copy (medians): {median_ratio:.3f}")
    print(f"ratio handler / copy with its args:  {sum(handled) / sum(same):.3f}")
    print(f"a HEAD-first guard would cost:       {(sum(bare) + sum(guard)) / sum(bare):.3f} x")
    print(
        f"handler's own code (S3 answering instantly): {own_us:.1f} us per record, "
        f"{own_us / (statistics.median(bare) * 1e6):.2%} of a median bare copy"
    )
    print("guard, warm path, one container, site answering (holds read, reports taken):")
    for label, (n, requests, lookups, held, elapsed) in (
        ("no hold", no_hold),
        ("a hold on another pair", held_elsewhere),
        ("this pair held", held_here),
    ):
        # A lookup at the start, then at most one per 15 s cache.
        bound = math.floor(elapsed / lambda_function.GUARD_CACHE_SECONDS) + 1
        print(
            f"  {label:<24} {n:6,} records in {elapsed:5.1f} s: "
            f"S3 requests per record {requests / n:.2f}, "
            f"guard lookups {lookups} ({lookups / n:.4f} per record; "
            f"at most {bound} allowed in {elapsed:.1f} s), held {held:,}"
        )
    print(
        f"  reports posted while no hold: {reports:,} ({reports / no_hold[0]:.2f} per record); "
        "a held pair's HEAD replaces the copy for a key the backup has"
    )


if __name__ == "__main__":
    main()

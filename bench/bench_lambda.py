"""Benchmark: the Lambda handler's time per record against a bare boto3 copy_object.

Not a test: it prints figures. Both sides run in the same process, against the same
in-process moto S3 server, on the same objects, interleaved record by record so that load
from other programs on the machine weighs on both alike. Compare the ratio, not the absolute
times (see ../shared/BENCHMARKING.md).

    .venv/bin/python bench/bench_lambda.py [--objects 1000] [--size 1024]
"""

import argparse
import logging
import os
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moto.server import ThreadedMotoServer

from replication import lambda_function

SOURCE, BARE, SAME, HANDLED, GUARD = (
    "bench-src",
    "bench-bare",
    "bench-same-args",
    "bench-handled",
    "bench-guard",
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
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    port = free_port()
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
    for bucket in (SOURCE, BARE, SAME, HANDLED, GUARD):
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
                result = lambda_function.lambda_handler(event, context)
                handled.append(time.perf_counter() - t0)
                assert result["copied"] == 1, result
            else:
                # For scale: a HEAD with IfMatch, the request a HEAD-first guard would add.
                s3.head_object(Bucket=SOURCE, Key=key, IfMatch=etag)
                guard.append(time.perf_counter() - t0)

    copied = s3.list_objects_v2(Bucket=HANDLED)["KeyCount"]
    server.stop()

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
    print(f"ratio handler / bare copy (totals):  {ratio:.3f}  (target <= 1.10)")
    print(f"ratio handler / bare copy (medians): {median_ratio:.3f}")
    print(f"ratio handler / copy with its args:  {sum(handled) / sum(same):.3f}")
    print(f"a HEAD-first guard would cost:       {(sum(bare) + sum(guard)) / sum(bare):.3f} x")
    print(
        f"handler's own code (S3 answering instantly): {own_us:.1f} us per record, "
        f"{own_us / (statistics.median(bare) * 1e6):.2%} of a median bare copy"
    )


if __name__ == "__main__":
    main()

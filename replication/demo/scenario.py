"""What the demo does, decided without touching S3 or the database (pure).

Three pairs, each showing something a real deployment meets: a healthy mirrored log bucket,
a photo library hit by a throttled burst, a late, out-of-order event and an overwrite gone
wrong (copied into the backup, restorable from its versions), and an invoice bucket with a
key the function may not read and objects written while no event arrived.
"""

import hashlib
import itertools
import random
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

DEMO_USER = "demo"


@dataclass(frozen=True)
class PairPlan:
    name: str
    source_bucket: str
    backup_bucket: str
    objects: int
    grace_seconds: int = 60
    # Reconciled on this schedule by `make demo`'s in-process scheduler, as beat would.
    reconcile_every_minutes: int = 5
    source_prefix: str = ""
    mirror_deletes: bool = False
    # Keys the demo makes fail, and keys written to the source without any event.
    denied: tuple[str, ...] = ()
    throttled: int = 0
    unannounced: int = 0
    deleted: int = 0
    late_and_out_of_order: bool = False
    # An overwrite gone wrong: this many objects under the prefix (relative to the source
    # prefix) overwritten with garbage after the backup has them; the backup copies it too.
    overwritten: int = 0
    overwritten_prefix: str = ""
    # Off for one pair, to show the protection warning and its fix.
    backup_versioned: bool = True
    key_patterns: tuple[str, ...] = field(default=("{n:05d}.bin",))

    def unannounced_keys(self) -> list[str]:
        return [f"{self.source_prefix}unannounced/{n:03d}.bin" for n in range(self.unannounced)]


# 2,000 objects: small enough to seed in about a minute on a laptop, large enough for the pages to
# have percentiles, a run with discrepancies and more than one page of objects.
PAIRS = (
    PairPlan(
        name="demo-photos",
        source_bucket="demo-photos-src",
        source_prefix="originals/",
        backup_bucket="demo-photos-bak",
        objects=1000,
        # Long: the throttled copies still failing are "within grace" (a warning, not missing).
        grace_seconds=3600,
        throttled=24,
        late_and_out_of_order=True,
        # Under the destructive-change guard's 500: a mistake it lets through, which only
        # the backup's versions can undo. Every object under the prefix (IMG_00102 to
        # IMG_00198), so that restoring the prefix brings back exactly those.
        overwritten=25,
        overwritten_prefix="raw/IMG_001",
        key_patterns=(
            "2026/{n:05d}.jpg",
            "2026/holiday {n:05d}.jpg",
            "raw/IMG_{n:05d}+edit.cr3",
            "albums/été/{n:05d}.heic",
        ),
    ),
    PairPlan(
        name="demo-logs",
        source_bucket="demo-logs-src",
        backup_bucket="demo-logs-bak",
        objects=600,
        grace_seconds=300,
        mirror_deletes=True,
        deleted=20,
        key_patterns=("app/2026-11-{d:02d}/{n:05d}.log.gz",),
    ),
    PairPlan(
        name="demo-invoices",
        source_bucket="demo-invoices-src",
        backup_bucket="demo-invoices-bak",
        objects=400,
        # Short: the objects written without an event are missing by the time it reconciles.
        grace_seconds=10,
        denied=("2026/11/restricted/payroll.pdf",),
        unannounced=30,
        backup_versioned=False,
        key_patterns=("2026/11/INV-{n:05d}.pdf", "2026/10/INV-{n:05d}.pdf"),
    ),
)


def format_key(pattern: str, n: int) -> str:
    return pattern.format(n=n, d=1 + n % 28)


def object_keys(plan: PairPlan) -> list[str]:
    """Every key the seed writes with an event: the plan's patterns, then its denied keys."""
    patterns = itertools.cycle(plan.key_patterns)
    keys = [plan.source_prefix + format_key(next(patterns), n) for n in range(plan.objects)]
    return keys + [plan.source_prefix + key for key in plan.denied]


def overwritten_keys(plan: PairPlan, keys: list[str], failed: set[str]) -> list[str]:
    """The keys the overwrite gone wrong hits: the first ``plan.overwritten`` under its prefix
    that the backup holds (a throttled copy that never landed has no earlier state to bring
    back)."""
    prefix = plan.source_prefix + plan.overwritten_prefix
    hit = [key for key in keys if key.startswith(prefix) and key not in failed]
    return hit[: plan.overwritten]


def garbage(size: int, seed: str) -> bytes:
    """Bytes that look encrypted (as ransomware leaves an object), ``size`` long."""
    block = hashlib.sha512(f"garbage:{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def body_for(key: str, version: int = 1) -> bytes:
    """A few hundred bytes to a few kilobytes, the same for the same key and version."""
    digest = hashlib.sha256(f"{key}#{version}".encode()).digest()
    size = 200 + int.from_bytes(digest[:2], "big") % 3800
    return (digest * (size // len(digest) + 1))[:size]


class Sequencers:
    """Increasing S3-style sequencers (hex), so later writes of a key always sort later."""

    def __init__(self, start: int | None = None) -> None:
        self._next = itertools.count(start if start is not None else time.time_ns())

    def __call__(self) -> str:
        return f"{next(self._next):020X}"


def s3_record(
    bucket: str,
    key: str,
    *,
    etag: str,
    size: int,
    sequencer: str,
    event_time: datetime,
    event_name: str = "ObjectCreated:Put",
    version_id: str | None = None,
) -> dict:
    """One record of an S3 event notification, the key form-encoded as S3 encodes it."""
    obj = {
        "key": urllib.parse.quote_plus(key, safe="/"),
        "sequencer": sequencer,
        "eTag": etag.strip('"'),
        "size": size,
    }
    if version_id:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": event_time.astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "backupsite-demo",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


LATE_BY = timedelta(minutes=25)


@dataclass(frozen=True)
class TrickleStep:
    pair: str
    key: str
    fail: bool


def trickle_steps(rng: random.Random, pairs=PAIRS):
    """An endless stream of writes for the running demo: mostly copies, now and then a
    throttled one, weighted towards the bigger pairs."""
    weights = [plan.objects for plan in pairs]
    counter = itertools.count()
    while True:
        plan = rng.choices(pairs, weights)[0]
        n = next(counter)
        key = f"{plan.source_prefix}live/{datetime.now(UTC):%Y%m%dT%H%M%S}-{n:05d}.bin"
        yield TrickleStep(pair=plan.name, key=key, fail=rng.random() < 0.04)

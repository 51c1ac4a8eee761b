"""Chart windows and their time buckets: which slice of time a chart shows, cut how.

Pure: no Django, no I/O. series.py asks the database for the same buckets on PostgreSQL.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from replication.status.stats import percentiles

# CopyStatus values (models are not imported here: this module stays pure). Lag counts the
# results that moved or removed bytes, as facts.LAG_STATUSES does.
COPIED = "copied"
DELETED = "deleted"
FAILED = "failed"
LAG_STATUSES = (COPIED, DELETED)


@dataclass(frozen=True)
class Window:
    """A chart's time span, cut into equal buckets aligned on multiples of ``bucket``."""

    name: str
    label: str
    span: timedelta
    bucket: timedelta

    @property
    def bucket_seconds(self) -> int:
        return int(self.bucket.total_seconds())

    def buckets(self, now: datetime) -> list[datetime]:
        """The start of every bucket that overlaps ``(now - span, now]``, oldest first."""
        last = bucket_start(now, self.bucket_seconds)
        count = math.ceil(self.span / self.bucket)
        return [last - self.bucket * i for i in range(count - 1, -1, -1)]

    def start(self, now: datetime) -> datetime:
        return self.buckets(now)[0]


WINDOWS = {
    window.name: window
    for window in (
        Window("1h", "1 hour", timedelta(hours=1), timedelta(minutes=1)),
        Window("24h", "24 hours", timedelta(hours=24), timedelta(minutes=15)),
        Window("7d", "7 days", timedelta(days=7), timedelta(hours=2)),
        Window("30d", "30 days", timedelta(days=30), timedelta(hours=6)),
    )
}
DEFAULT_WINDOW = "24h"
# The overview's sparkline: one point per hour over the last day.
SPARKLINE_WINDOW = Window("spark", "24 hours", timedelta(hours=24), timedelta(hours=1))


def window_named(name: str | None) -> Window:
    """The window a query string asks for; anything unknown falls back to the default."""
    return WINDOWS.get(name or "", WINDOWS[DEFAULT_WINDOW])


def bucket_start(moment: datetime, bucket_seconds: int) -> datetime:
    """The start of the bucket holding ``moment``, buckets aligned on the Unix epoch (UTC)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % bucket_seconds, tz=UTC)


@dataclass
class Bucket:
    start: datetime
    copies: int = 0
    failures: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


def bucketise(
    rows: Iterable[tuple[datetime, float, str]], window: Window, now: datetime
) -> list[Bucket]:
    """Per-bucket counts and lag percentiles from ``(finished_at, lag_seconds, status)`` rows.

    ``copies`` counts copies, and lag is taken over copies and deletes (as on the health
    figures); failures are counted apart; skips are neither. Rows outside the window are ignored.
    """
    starts = window.buckets(now)
    index = {start: i for i, start in enumerate(starts)}
    lags: list[list[float]] = [[] for _ in starts]
    buckets = [Bucket(start) for start in starts]
    for finished_at, lag, status in rows:
        i = index.get(bucket_start(finished_at, window.bucket_seconds))
        if i is None:
            continue
        if status == FAILED:
            buckets[i].failures += 1
        else:
            if status == COPIED:
                buckets[i].copies += 1
            if status in LAG_STATUSES:
                lags[i].append(lag)
    for bucket, values in zip(buckets, lags, strict=True):
        if values:
            bucket.p50, bucket.p95, bucket.p99 = percentiles(values)
    return buckets

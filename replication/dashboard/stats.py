"""Percentiles and time buckets: the maths behind the lag figures, apart from any query.

PostgreSQL computes percentiles itself (``percentile_cont``); these functions give the same
answers where the database cannot (SQLite, the laptop default), and are what tests pin down.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PERCENTILES = (0.5, 0.95, 0.99)
# CopyStatus values (models are not imported here: this module stays pure).
COPIED = "copied"
FAILED = "failed"


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, as SQL's ``percentile_cont`` does.

    ``sorted_values`` must be sorted ascending; an empty sequence has no percentile.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"a percentile is between 0 and 1, not {q!r}")
    if not sorted_values:
        return None
    position = q * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(sorted_values[lower])
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


def percentiles(values: Iterable[float], qs: Sequence[float] = PERCENTILES) -> list[float | None]:
    ordered = sorted(values)
    return [percentile(ordered, q) for q in qs]


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

    Lag is a copy's (``copied`` events); failures are counted apart, and deletes and skips
    are neither. Rows outside the window are ignored.
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
        elif status == COPIED:
            buckets[i].copies += 1
            lags[i].append(lag)
    for bucket, values in zip(buckets, lags, strict=True):
        bucket.p50, bucket.p95, bucket.p99 = percentiles(values)
    return buckets

"""The destructive-change guard's decisions (pure): when it trips, and what "usual" is.

It trips when a pair's destructive changes (deletes and overwrites) over the last five
minutes exceed max(guard_min_changes, guard_factor x the usual), the usual being the 99th
percentile of the pair's 5-minute counts over the last 14 days; or when any copy was
refused because the source object is encrypted with a customer key (SSE-C).
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=5)
HISTORY = timedelta(days=14)
BUCKETS = HISTORY // WINDOW  # 4,032 five-minute counts make the usual


@dataclass(frozen=True)
class Trip:
    changes: int
    encrypted_refusals: int
    usual: int
    threshold: int
    reason: str


def threshold(min_changes: int, factor: int, usual: int) -> int:
    return max(min_changes, factor * usual)


def decide(
    changes: int, encrypted_refusals: int, *, min_changes: int, factor: int, usual: int
) -> Trip | None:
    """A Trip with its reason when the counts of the last five minutes trip the guard."""
    limit = threshold(min_changes, factor, usual)
    parts = []
    if changes > limit:
        parts.append(
            f"{changes:,} deletes and overwrites in 5 min, usually at most {usual:,} "
            f"(the guard trips above {limit:,})"
        )
    if encrypted_refusals:
        copies = "copy" if encrypted_refusals == 1 else "copies"
        parts.append(
            f"{encrypted_refusals:,} {copies} refused: the source object is encrypted with a "
            "key S3 does not hold (SSE-C), as ransomware leaves objects"
        )
    if not parts:
        return None
    return Trip(changes, encrypted_refusals, usual, limit, "; ".join(parts))


def five_minute_counts(minutes: Iterable[tuple[datetime, int]]) -> dict[datetime, int]:
    """Per-minute counts summed into five-minute buckets aligned on the hour."""
    buckets: dict[datetime, int] = {}
    for minute, n in minutes:
        start = minute.replace(minute=minute.minute - minute.minute % 5, second=0, microsecond=0)
        buckets[start] = buckets.get(start, 0) + n
    return buckets


def usual(counts: Iterable[int], buckets: int = BUCKETS) -> int:
    """The 99th percentile (nearest rank) of ``buckets`` five-minute counts, of which
    ``counts`` are the non-zero ones (a quiet pair's usual is 0)."""
    values = sorted(c for c in counts if c > 0)
    if buckets <= 0:
        return 0
    rank = math.ceil(0.99 * buckets)  # 1-based, in the ascending list with the zeros first
    index = rank - 1 - (buckets - len(values))
    return values[index] if index >= 0 else 0

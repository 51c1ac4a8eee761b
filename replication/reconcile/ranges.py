"""Key ranges: how one pair is cut into pieces that several workers reconcile at once. Pure.

A range holds the keys ``k`` (prefix removed) with ``start_after < k <= end``; ``None`` is an
open bound. Boundaries are keys sampled every N source objects by the previous run, so the
ranges come out about N objects each; the listing of a range starts with S3's ``StartAfter``
and stops at the first key past ``end``, so no key is listed twice or skipped.
"""

from collections.abc import Iterable
from typing import NamedTuple


class KeyRange(NamedTuple):
    start_after: str | None = None
    end: str | None = None

    def contains(self, key: str) -> bool:
        return (self.start_after is None or key > self.start_after) and (
            self.end is None or key <= self.end
        )


def split(boundaries: Iterable[str], max_ranges: int) -> list[KeyRange]:
    """Ranges covering every key, cut at (at most ``max_ranges - 1`` of) ``boundaries``."""
    cuts = sorted(set(boundaries))
    if max_ranges < 1:
        raise ValueError("max_ranges must be at least 1")
    if len(cuts) > max_ranges - 1:
        # Keep evenly spaced cuts: fewer, larger ranges of roughly equal size.
        step = len(cuts) / (max_ranges - 1) if max_ranges > 1 else 0
        cuts = [cuts[int(i * step)] for i in range(max_ranges - 1)]
    starts = [None, *cuts]
    ends = [*cuts, None]
    return [KeyRange(start, end) for start, end in zip(starts, ends, strict=True)]


class BoundarySampler:
    """Remembers every ``every``-th key it sees: the cut points for the next run."""

    def __init__(self, every: int):
        self.every = max(1, every)
        self.seen = 0
        self.boundaries: list[str] = []

    def see(self, key: str) -> None:
        self.seen += 1
        if self.seen % self.every == 0:
            self.boundaries.append(key)

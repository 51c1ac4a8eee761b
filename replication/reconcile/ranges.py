"""Key ranges: how one pair is cut into pieces that several workers reconcile at once. Pure.

A range holds the keys ``k`` (prefix removed) with ``start_after < k <= end``; ``None`` is an
open bound. Boundaries are keys sampled every N source objects by the previous run, so the
ranges come out about N objects each; the listing of a range starts with S3's ``StartAfter``
and stops at the first key past ``end``, so no key is listed twice or skipped.
"""

from collections.abc import Callable, Iterable
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


# --- The first run: no previous run has sampled boundaries, so probe the key space ---------

Probe = Callable[[list[tuple[str | None, int]]], list[list[str]]]
"""Answers a batch of ``(start_after, max_keys)`` listings with their keys, in order."""

PROBE_PAGE = 1000
TOP = "\U0010ffff"  # sorts after every character a key can hold
_MAX_DEPTH = 3
_MAX_PROBES = 2000
_NEXT_ROUNDS = 4


def first_run_cuts(probe: Probe, wanted: int) -> list[str]:
    """Cut points for a pair's first run, found by start-after probes of its source keys.

    The keys' common prefix is found first (a bucket whose keys all sit under one
    directory), then the distinct next characters after it, one probe per character of
    the alphabet the first page uses (digits always), level by level until there are
    ``wanted`` or more branches (and a few rounds of "the key after each branch" find the
    characters the first page did not show): sequential numbers branch on their leading
    digits, a tree of directories on its names. Any cut is correct (the ranges still cover
    every key once), only the balance depends on them; a bucket of one page or less gets
    none.
    """
    if wanted < 2:
        return []
    (first,) = probe([(None, PROBE_PAGE)])
    if len(first) < PROBE_PAGE:
        return []
    prefix = _common_prefix(probe, first[0], first[-1])
    alphabet = sorted(set("".join(first)) | set("0123456789"))
    frontier = [prefix]
    branches: list[str] = []
    probes = 0
    for _ in range(_MAX_DEPTH):
        if probes + len(frontier) * (len(alphabet) + 1) > _MAX_PROBES:
            break
        # Each stem's first key after the stem itself finds its smallest branch.
        stems = [stem for stem in frontier for c in ("", *alphabet)]
        asks = [(stem + c, 1) for stem in frontier for c in ("", *alphabet)]
        probes += len(asks)
        found: set[str] = set()
        for stem, keys in zip(stems, probe(asks), strict=True):
            if keys and keys[0].startswith(stem) and len(keys[0]) > len(stem):
                found.add(keys[0][: len(stem) + 1])
        # Characters the first page did not show: the key after each branch finds the next.
        new = found
        for _ in range(_NEXT_ROUNDS if len(found) < wanted else 0):
            asks = [(branch + TOP, 1) for branch in sorted(new)]
            probes += len(asks)
            new = set()
            for (bound, _n), keys in zip(asks, probe(asks), strict=True):
                stem = bound[:-2]
                if keys and keys[0].startswith(stem) and len(keys[0]) > len(stem):
                    new.add(keys[0][: len(stem) + 1])
            new -= found
            if not new:
                break
            found |= new
        if not found:
            break
        branches = sorted(found)
        if len(branches) >= wanted:
            break
        frontier = branches
    # A cut at a branch's own name ends the range before that branch's keys (longer keys sort
    # after it); the first branch needs no cut.
    return branches[1:]


def _common_prefix(probe: Probe, first: str, last_seen: str) -> str:
    """The longest prefix of ``first`` that every key shares (nothing sorts after it + TOP)."""
    limit = 0
    while limit < min(len(first), len(last_seen)) and first[limit] == last_seen[limit]:
        limit += 1
    low, high = 0, limit  # every key shares first[:low]; first[:high + 1] is not shared
    while low < high:
        mid = (low + high + 1) // 2
        (after,) = probe([(first[:mid] + TOP, 1)])
        if after:
            high = mid - 1
        else:
            low = mid
    return first[:low]

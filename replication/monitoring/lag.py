"""The copy lag histogram's buckets: pure arithmetic shared by ingest (which counts) and
/metrics (which reports). No Django."""

import bisect
from itertools import accumulate

# Upper bounds in seconds, chosen for replication lag: a healthy Lambda copy takes a second
# or two, S3 Replication Time Control promises 15 minutes, and beyond an hour the exact
# figure no longer matters. Changing them renumbers stored buckets: add, never reorder.
LAG_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
# The index of the implicit +Inf bucket.
OVERFLOW = len(LAG_BUCKETS)


def bucket_index(lag_seconds: float) -> int:
    """The first bucket whose upper bound is >= the lag (Prometheus' ``le``)."""
    return bisect.bisect_left(LAG_BUCKETS, lag_seconds)


def bucket_index_sql(seconds: str) -> str:
    """The same rule as a SQL expression over ``seconds`` (a column or expression)."""
    cases = " ".join(f"WHEN {seconds} <= {bound!r} THEN {i}" for i, bound in enumerate(LAG_BUCKETS))
    return f"(CASE {cases} ELSE {OVERFLOW} END)"


def cumulative(counts: dict[int, int]) -> list[tuple[str, int]]:
    """(le, count) pairs as Prometheus wants them, from counts per bucket index."""
    return list(zip(_LE, accumulate(counts.get(i, 0) for i in range(OVERFLOW + 1)), strict=True))


# The buckets' "le" labels, written once: a scrape writes them for every pair.
_LE = (*(repr(bound) for bound in LAG_BUCKETS), "+Inf")

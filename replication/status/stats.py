"""Lag statistics. Pure: no Django, no I/O.

PostgreSQL computes percentiles itself (``percentile_cont``); elsewhere facts.py hands the
window's values to ``percentiles`` here, which interpolates exactly as ``percentile_cont``
does, so both databases show the same numbers.
"""

import math
from collections.abc import Sequence

LAG_PERCENTILES = (0.5, 0.95, 0.99)


def percentiles(
    values: Sequence[float], fractions: Sequence[float] = LAG_PERCENTILES
) -> tuple[float, ...] | None:
    """The continuous percentiles of ``values`` (linear interpolation between the closest
    ranks, as SQL's ``percentile_cont``); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    result = []
    for fraction in fractions:
        if not 0 <= fraction <= 1:
            raise ValueError(f"a percentile is a fraction from 0 to 1, not {fraction}")
        position = fraction * last
        below = math.floor(position)
        above = min(below + 1, last)
        weight = position - below
        result.append(ordered[below] + (ordered[above] - ordered[below]) * weight)
    return tuple(result)

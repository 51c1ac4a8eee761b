"""The hourly lag histogram: pure arithmetic behind the charts that span days."""

import random

import pytest

from replication.dashboard import histogram
from replication.status.stats import percentiles as exact_percentiles


def counts_of(lags):
    counts = {}
    for lag in lags:
        index = histogram.bucket_index(lag)
        counts[index] = counts.get(index, 0) + 1
    return counts


def test_bounds_are_eight_per_decade_from_a_tenth_of_a_second_past_a_day():
    assert histogram.BOUNDS[0] == 0.1
    assert histogram.BOUNDS[8] == 1.0
    assert histogram.BOUNDS[16] == 10.0
    assert histogram.BOUNDS[-1] == 100_000.0
    assert list(histogram.BOUNDS) == sorted(set(histogram.BOUNDS))


@pytest.mark.parametrize(
    ("seconds", "index"),
    [(0.0, 0), (0.0999, 0), (0.1, 1), (0.99, 8), (1.0, 9), (99_999.0, 48), (100_000.0, 49)],
)
def test_a_bucket_holds_lags_from_the_bound_below_it_up_to_its_own(seconds, index):
    assert histogram.bucket_index(seconds) == index


def test_nothing_counted_has_no_percentiles():
    assert histogram.percentiles({}) is None
    assert histogram.percentiles({3: 0}) is None


def test_one_lag_reads_back_inside_its_own_bucket():
    p50, p95, p99 = histogram.percentiles(counts_of([2.5]))
    lower, upper = histogram.BOUNDS[
        histogram.bucket_index(2.5) - 1 : histogram.bucket_index(2.5) + 1
    ]
    assert lower <= p50 <= p95 <= p99 <= upper


def test_percentiles_interpolate_linearly_inside_the_bucket_holding_the_rank():
    # 100 lags in bucket 8, [0.75 s, 1 s): the median is half way through it.
    (p50,) = histogram.percentiles({8: 100}, fractions=(0.5,))
    assert p50 == pytest.approx(0.7499 + (1.0 - 0.7499) / 2)


def test_estimates_stay_within_a_bucket_of_the_exact_percentiles():
    rng = random.Random(7)
    lags = [rng.lognormvariate(0.5, 0.8) for _ in range(10_000)] + [600.0] * 10
    estimated = histogram.percentiles(counts_of(lags))
    for estimate, exact in zip(estimated, exact_percentiles(lags), strict=True):
        assert exact / 1.334 <= estimate <= exact * 1.334


def test_a_rank_in_the_overflow_bucket_reads_as_the_last_bound():
    assert histogram.percentiles({histogram.OVERFLOW: 5}) == (100_000.0,) * 3


def test_a_fraction_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="fraction"):
        histogram.percentiles({1: 1}, fractions=(1.5,))


def test_merged_sums_a_bucket_counted_in_several_rows_and_keeps_the_order():
    assert histogram.merged([3, 3, 5, 7, 7, 7], [1, 2, 4, 1, 1, 1]) == ([3, 5, 7], [3, 4, 3])
    assert histogram.merged([2, 4], [5, 6]) == ([2, 4], [5, 6])

"""Lag percentiles: the pure interpolation, and PostgreSQL's percentile_cont agreeing with it."""

import pytest

from replication.status.stats import percentiles


def test_percentiles_of_nothing_are_none():
    assert percentiles([]) is None


def test_one_value_is_every_percentile():
    assert percentiles([7.0]) == (7.0, 7.0, 7.0)


def test_percentiles_interpolate_between_the_closest_ranks():
    values = [10.0, 1.0, 4.0, 2.0, 3.0]  # order does not matter
    assert percentiles(values, (0.0, 0.5, 0.95, 1.0)) == pytest.approx((1.0, 3.0, 8.8, 10.0))


def test_a_percentile_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="fraction from 0 to 1"):
        percentiles([1.0], (95,))

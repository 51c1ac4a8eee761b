"""Sequencer ordering (pure): which result is an object's newest."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.ingest.ordering import (
    SEQUENCER_WIDTH,
    Precedence,
    newest_per_object,
    sequencer_order,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Result:
    def __init__(self, name: str, sequencer: str, attempt: int = 1, finished: int = 0):
        self.name = name
        self.precedence = Precedence(
            sequencer_order(sequencer), T0 + timedelta(seconds=finished), attempt
        )


def test_sequencer_is_right_padded_to_a_fixed_upper_case_width():
    assert sequencer_order("0055aed6dcd90281e5") == "0055AED6DCD90281E5" + "0" * 14
    assert len(sequencer_order("1")) == SEQUENCER_WIDTH


def test_shorter_sequencer_compares_as_if_right_padded_with_zeros():
    # Right-padding makes "0A" (0A0) greater than "09F"; left-padding would say the opposite.
    assert sequencer_order("0A") > sequencer_order("09F")
    assert sequencer_order("0055AED6DCD90281E5") > sequencer_order("0055AED6DCD90281E")
    assert sequencer_order("0055AED6DCD90281E") == sequencer_order("0055AED6DCD90281E0")


def test_case_does_not_change_the_order():
    assert sequencer_order("00ff") == sequencer_order("00FF")
    assert sequencer_order("00fe") < sequencer_order("00FF")


@pytest.mark.parametrize(
    ("sequencer", "problem"),
    [
        ("", "hexadecimal"),
        ("12G4", "hexadecimal"),
        ("0x12", "hexadecimal"),
        ("\uff11\uff12", "hexadecimal"),  # full-width digits: digits to Python, not to S3
        ("F" * (SEQUENCER_WIDTH + 1), f"at most {SEQUENCER_WIDTH}"),
    ],
)
def test_malformed_or_too_long_sequencer_is_refused(sequencer, problem):
    with pytest.raises(ValueError, match=problem):
        sequencer_order(sequencer)


@given(st.lists(st.text("0123456789ABCDEF", min_size=1, max_size=SEQUENCER_WIDTH), min_size=2))
def test_padded_forms_sort_exactly_as_s3_compares(sequencers):
    def s3_compare_key(s: str) -> str:
        return s.ljust(max(map(len, sequencers)), "0")

    assert sorted(sequencers, key=sequencer_order) == sorted(sequencers, key=s3_compare_key)


def test_greatest_sequencer_wins_whatever_the_arrival_order():
    put = Result("put", "0055AED6DCD90281E5")
    delete = Result("delete", "0055AED6DCD90281E6")
    older = Result("older", "0055AED6DCD9028")
    for arrival in itertools.permutations([put, delete, older]):
        newest = newest_per_object(("photo.jpg", r) for r in arrival)
        assert newest["photo.jpg"].name == "delete"


def test_retry_of_the_same_event_supersedes_the_failed_attempt():
    failed = Result("failed", "00AB", attempt=1, finished=1)
    retried = Result("retried", "00AB", attempt=2, finished=5)
    for arrival in ([failed, retried], [retried, failed]):
        assert newest_per_object(("k", r) for r in arrival)["k"].name == "retried"


def test_of_one_event_the_result_that_finished_last_wins_whatever_its_attempt():
    # S3 delivered the event again after the Lambda's retries gave up: the new delivery
    # starts at attempt 1 and its success is the newest result.
    gave_up = Result("gave-up", "00AB", attempt=3, finished=1)
    redelivered = Result("redelivered", "00AB", attempt=1, finished=9)
    for arrival in ([gave_up, redelivered], [redelivered, gave_up]):
        assert newest_per_object(("k", r) for r in arrival)["k"].name == "redelivered"


def test_higher_attempt_breaks_a_tie_and_a_full_tie_keeps_the_first_seen():
    first = Result("first", "00AB", attempt=1, finished=2)
    second = Result("second", "00AB", attempt=2, finished=2)
    assert newest_per_object([("k", second), ("k", first)])["k"].name == "second"
    twin = Result("twin", "00AB", attempt=2, finished=2)
    assert newest_per_object([("k", second), ("k", twin)])["k"].name == "second"


def test_each_object_keeps_its_own_newest():
    newest = newest_per_object(
        [("a", Result("a1", "01")), ("b", Result("b2", "02")), ("a", Result("a3", "03"))]
    )
    assert {k: r.name for k, r in newest.items()} == {"a": "a3", "b": "b2"}

"""Choosing a drill's sample, as a pure function of a listing."""

import random
from collections import Counter
from datetime import UTC, datetime

from replication.reconcile.diff import Entry
from replication.restore.sample import SPARES, Sampler, is_md5, is_multipart, pick

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
MD5 = "0123456789abcdef0123456789abcdef"


def entry(key: str, size: int = 10, etag: str = MD5) -> Entry:
    return Entry(key, size, etag, WHEN)


def test_the_sampler_keeps_a_bounded_reservoir_whatever_the_listing():
    sampler = Sampler(size=20, max_bytes=100, rng=random.Random(1))

    sampler.see_all(entry(f"k{n}") for n in range(100_000))

    assert len(sampler.reservoir) == 20 * SPARES
    assert sampler.seen == 100_000


def test_every_object_is_as_likely_to_be_drawn():
    drawn = Counter()
    for seed in range(400):
        sampler = Sampler(size=2, max_bytes=0, rng=random.Random(seed))
        sampler.see_all(entry(f"k{n}") for n in range(12))
        chosen, _ = pick(sampler, lambda e: True)
        drawn.update(e.key for e in chosen)

    assert len(drawn) == 12
    assert max(drawn.values()) < 2 * min(drawn.values())  # 400 x 2 / 12 = 67 each, roughly


def test_the_largest_unchanged_multipart_object_under_the_limit_is_added():
    sampler = Sampler(size=2, max_bytes=1000, rng=random.Random(3))
    sampler.see_all(
        [
            entry("small", 5),
            entry("other", 6),
            entry("mp-300", 300, MD5 + "-2"),
            entry("mp-900", 900, MD5 + "-3"),
            entry("mp-950-changed", 950, MD5 + "-3"),
            entry("mp-5000", 5000, MD5 + "-9"),  # over the limit
        ]
    )

    chosen, largest = pick(sampler, lambda e: "changed" not in e.key)

    assert largest.key == "mp-900"
    assert len(chosen) == 2 and largest not in chosen


def test_keys_too_long_for_the_scratch_place_are_not_drawn():
    sampler = Sampler(size=5, max_bytes=0, max_key_bytes=8)

    sampler.see_all([entry("short"), entry("much-too-long"), entry("é" * 5)])

    assert [e.key for e in sampler.reservoir] == ["short"]


def test_etag_kinds():
    assert is_md5(MD5) and not is_multipart(MD5)
    assert is_multipart(MD5 + "-12") and not is_md5(MD5 + "-12")

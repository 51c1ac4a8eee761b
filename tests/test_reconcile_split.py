"""The first run's split: start-after probes cut any key space into ranges, none lost."""

import bisect

import pytest

from replication.reconcile import ranges
from replication.reconcile import run as run_module
from replication.reconcile.ranges import first_run_cuts, split
from tests.reconcile_support import an_hour_ago, found, prefixed_pair
from tests.test_reconcile_run import counts, put_backup, put_both, put_source


class Listing:
    """A sorted key space answering probes as S3's ListObjectsV2 would, counting them."""

    def __init__(self, keys):
        self.keys = sorted(keys)
        self.probes = 0
        self.round_trips = 0
        self.asked = []

    def __call__(self, asks):
        self.probes += len(asks)
        self.round_trips += 1
        self.asked += asks
        answers = []
        for start_after, max_keys in asks:
            at = bisect.bisect_right(self.keys, start_after) if start_after else 0
            answers.append(self.keys[at : at + max_keys])
        return answers


def ranges_of(keys, wanted=16):
    return split(first_run_cuts(Listing(keys), wanted), wanted)


@pytest.fixture
def small_ranges(monkeypatch):
    """Ranges of one page are allowed, so test-sized buckets split as large ones do."""
    monkeypatch.setattr(ranges, "MIN_RANGE_KEYS", ranges.PROBE_PAGE)


def assert_every_key_in_exactly_one_range(keys, cut):
    for key in keys:
        assert sum(r.contains(key) for r in cut) == 1, key


def sizes(keys, cut):
    return [sum(r.contains(k) for k in keys) for r in cut]


def test_a_tree_of_directories_is_cut_into_even_ranges(small_ranges):
    keys = [f"data/{i // 1000:05d}/{i:09d}.bin" for i in range(20_000)]
    cut = ranges_of(keys)

    assert len(cut) == 16
    assert_every_key_in_exactly_one_range(keys, cut)
    assert max(sizes(keys, cut)) <= 2 * len(keys) / 16


def test_sequential_numbers_without_any_prefix_are_cut_on_their_digits(small_ranges):
    keys = [f"{i:010d}" for i in range(30_000)]
    cut = ranges_of(keys)

    assert len(cut) == 16
    assert_every_key_in_exactly_one_range(keys, cut)
    assert max(sizes(keys, cut)) <= 2 * len(keys) / 16


def test_keys_that_all_share_one_long_prefix_are_cut_below_it(small_ranges):
    keys = [f"logs/2026/11/28/host-a/{i:08d}.gz" for i in range(12_000)]
    cut = ranges_of(keys)

    assert len(cut) > 8
    assert all(r.end is None or r.end.startswith("logs/2026/11/28/host-a/") for r in cut)
    assert_every_key_in_exactly_one_range(keys, cut)


def test_a_skewed_key_space_still_covers_every_key_once(small_ranges):
    keys = [f"a/{i:06d}" for i in range(3_000)] + [f"b{i}" for i in range(5)]
    keys += ["\u00e9t\u00e9/1", "z", "z/deep/key"]
    cut = ranges_of(keys)

    assert len(cut) > 1
    assert_every_key_in_exactly_one_range(keys, cut)


def test_the_estimated_size_limits_the_ranges_so_none_is_smaller_than_ten_s3_pages():
    keys = [f"data/{i // 1000:05d}/{i:09d}.bin" for i in range(50_000)]
    cut = ranges_of(keys)

    assert 2 <= len(cut) <= 5
    assert_every_key_in_exactly_one_range(keys, cut)


def test_a_bucket_of_a_few_pages_stays_one_range_after_a_few_dozen_probes():
    listing = Listing([f"data/{i // 1000:05d}/{i:09d}.bin" for i in range(10_000)])
    assert first_run_cuts(listing, 16) == []
    assert listing.probes < 50


@pytest.mark.parametrize(
    ("keys", "cuts", "round_trips"),
    [
        # Five branches under data/, ten under data/0, and data/00 held whole by the first
        # page: both levels are walked in the same round trips. Level by level took ten.
        ([f"data/{i % 50:02d}/{i:07d}.bin" for i in range(10_000)], 0, 7),
        # Numbers: the first page holds 000000 whole, three levels below the common prefix
        # 000: 5 x 10 x 10 x 100 keys, walked at once. Level by level took fourteen.
        ([f"{i:08d}" for i in range(50_000)], 4, 7),
    ],
)
def test_the_levels_down_the_first_key_are_walked_together_to_estimate_the_size(
    keys, cuts, round_trips
):
    listing = Listing(keys)

    assert len(first_run_cuts(listing, 16)) == cuts
    assert listing.round_trips == round_trips


def test_the_keys_common_prefix_is_found_several_lengths_per_round_trip():
    listing = Listing([f"backups/2026/host-{h}/{n:05d}" for h in "abc" for n in range(300)])

    prefix = ranges._common_prefix(listing, listing.keys[0], listing.keys[199])

    assert prefix == "backups/2026/host-"
    assert listing.round_trips <= 3  # one length at a time, halving, took 5


def test_branches_that_follow_in_the_alphabet_are_found_a_few_at_a_time():
    listing = Listing([f"logs/{i:04d}.gz" for i in range(10_000)])
    first = listing.keys[0]
    alphabet = sorted(set("logs/0123456789.gz"))

    branches = ranges._levels(listing, ["logs/"], first, alphabet)["logs/"]

    assert branches == [f"logs/{d}" for d in "0123456789"]
    assert listing.round_trips == 4  # one at a time, it took ten


@pytest.mark.parametrize("chars", ["059", "abdz", "0123456789abcdefghij", "7"])
def test_every_branch_is_found_wherever_it_sits_in_the_alphabet(chars):
    listing = Listing([f"p/{c}/{n}" for c in chars for n in range(50)])
    alphabet = sorted(set("p/0123456789abcdef"))

    branches = ranges._levels(listing, ["p/"], listing.keys[0], alphabet)["p/"]

    assert branches == [f"p/{c}" for c in chars]


def test_the_next_level_of_many_branches_is_walked_for_all_of_them_at_once():
    listing = Listing([f"s/{a}{b}/{n}" for a in "0123456789" for b in "0123456789" for n in "xy"])
    alphabet = sorted(set(" \"%&'+-./0123456789<>abcdefinté"))  # a first page with odd keys
    stems = [f"s/{a}" for a in "0123456789"]

    branches = ranges._deeper(listing, stems, alphabet)

    assert branches == [f"s/{a}{b}" for a in "0123456789" for b in "0123456789"]
    assert listing.round_trips <= 6
    assert listing.probes <= 200  # by alphabet, 10 stems x 32 probes, and 100 more


def test_no_probe_is_asked_twice():
    listing = Listing([f"data/{i // 1000:05d}/{i:09d}.bin" for i in range(100_000)])
    first_run_cuts(listing, 16)
    assert len(set(listing.asked)) == len(listing.asked)


@pytest.mark.parametrize("keys", [[], ["only"], [f"k{i}" for i in range(ranges.PROBE_PAGE - 1)]])
def test_empty_and_tiny_buckets_are_one_range_after_a_single_probe(keys):
    listing = Listing(keys)
    assert first_run_cuts(listing, 16) == []
    assert listing.probes == 1


def test_no_probe_at_all_when_a_single_range_is_wanted():
    listing = Listing([f"k{i:05d}" for i in range(5000)])
    assert first_run_cuts(listing, 1) == []
    assert listing.probes == 0


# --- Against moto: a first run splits, and finds exactly what one range finds ----------------

SOURCE, BACKUP = "rec-src", "rec-bak"


@pytest.fixture
def docs(db, s3):
    return prefixed_pair(SOURCE, BACKUP, "live/", "copies/live/")


def fill_with_a_known_diff(s3):
    with an_hour_ago():
        for n in range(60):
            key = f"{n // 10}/{n:03d}.txt"
            if n % 9 == 0:
                put_source(s3, key)
            elif n % 11 == 0:
                put_backup(s3, key + ".old")
                put_both(s3, key)
            elif n % 7 == 0:
                put_source(s3, key, b"one")
                put_backup(s3, key, b"two")
            else:
                put_both(s3, key)


def test_a_first_run_lists_in_ranges_and_finds_exactly_what_one_range_finds(s3, docs, monkeypatch):
    from tests.test_reconcile_run import reconcile_now

    monkeypatch.setattr(ranges, "PROBE_PAGE", 5)  # "more than a page" at test scale
    monkeypatch.setattr(ranges, "MIN_RANGE_KEYS", 5)
    fill_with_a_known_diff(s3)

    first = reconcile_now(docs)
    whole = reconcile_now(docs, boundaries=[])

    assert first.ranges_total > 1
    assert whole.ranges_total == 1
    assert counts(first) == counts(whole)
    assert found(first) == found(whole)
    assert first.missing and first.extra and first.mismatched


def test_a_later_run_uses_the_sampled_boundaries_instead_of_probing(
    s3, docs, settings, monkeypatch
):
    from tests.test_reconcile_run import reconcile_now

    settings.RECONCILE_RANGE_SIZE = 20
    fill_with_a_known_diff(s3)
    first = reconcile_now(docs)
    monkeypatch.setattr(run_module, "first_run_cuts", lambda *a: pytest.fail("probed again"))
    second = reconcile_now(docs)

    assert second.ranges_total == len(first.range_boundaries) + 1 > 1
    assert counts(second) == counts(first)
    assert found(second) == found(first)


def test_a_pair_its_last_run_found_too_small_to_split_is_not_probed_again(s3, docs, monkeypatch):
    from tests.test_reconcile_run import reconcile_now

    fill_with_a_known_diff(s3)  # 60 keys: fewer than two ranges of MIN_RANGE_KEYS (10,000)
    probes = []
    real_probe = run_module.probe_keys
    monkeypatch.setattr(run_module, "probe_keys", lambda *a: probes.append(a[2]) or real_probe(*a))
    first = reconcile_now(docs)
    assert probes, "a first run probes"
    probes.clear()

    second = reconcile_now(docs)

    assert probes == []
    assert first.ranges_total == second.ranges_total == 1
    assert counts(second) == counts(first)


def test_a_pair_that_was_big_enough_to_split_is_probed_again_without_boundaries(
    s3, docs, monkeypatch
):
    """A source of 20,000 to RECONCILE_RANGE_SIZE objects leaves no sampled boundaries, but
    is worth splitting at every run."""
    from tests.test_reconcile_run import reconcile_now

    monkeypatch.setattr(ranges, "PROBE_PAGE", 5)
    monkeypatch.setattr(ranges, "MIN_RANGE_KEYS", 5)
    fill_with_a_known_diff(s3)
    first = reconcile_now(docs)
    second = reconcile_now(docs)

    assert first.range_boundaries == []  # fewer objects than RECONCILE_RANGE_SIZE
    assert first.ranges_total == second.ranges_total > 1
    assert counts(second) == counts(first)


@pytest.fixture
def threaded_pair(s3, settings, monkeypatch):
    """A pair of a few small ranges, reconciled by 4 threads at once: PostgreSQL only."""
    from django.db import connection

    from tests.factories import make_pair

    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (set DATABASE_URL; CI does): the tests' in-memory SQLite locks "
            "whole tables, so threads writing their ranges at once fail"
        )
    settings.RECONCILE_INLINE_RANGES = 4
    monkeypatch.setattr(ranges, "PROBE_PAGE", 5)
    monkeypatch.setattr(ranges, "MIN_RANGE_KEYS", 5)
    pair = make_pair(
        source_bucket=SOURCE,
        source_prefix="live/",
        backup_bucket=BACKUP,
        backup_prefix="copies/live/",
        grace_seconds=600,
    )
    fill_with_a_known_diff(s3)
    return pair


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "processes", [1, 2, 0], ids=["threads", "forked-processes", "one-process-per-core"]
)
def test_ranges_reconciled_on_threads_find_exactly_what_one_range_finds(
    threaded_pair, settings, monkeypatch, processes
):
    from replication.reconcile import inline
    from tests.test_reconcile_run import reconcile_now

    settings.RECONCILE_INLINE_PROCESSES = processes
    monkeypatch.setattr(inline, "usable_cores", lambda: 2)
    threaded = reconcile_now(threaded_pair)
    whole = reconcile_now(threaded_pair, boundaries=[])

    assert threaded.status == "succeeded"
    assert threaded.ranges_total > 1
    assert counts(threaded) == counts(whole)
    assert found(threaded) == found(whole)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_range_process_that_dies_fails_the_run_and_says_so(threaded_pair, settings, monkeypatch):
    import os

    from replication.reconcile import inline
    from tests.test_reconcile_run import reconcile_now

    settings.RECONCILE_INLINE_PROCESSES = 2
    monkeypatch.setattr(inline, "run_range", lambda *args, **kwargs: os._exit(9))
    run = reconcile_now(threaded_pair)

    assert run.status == "failed"
    assert run.error == "a range process failed: exit code 9"


def test_ranges_are_handed_out_once_each_across_threads_and_forked_processes():
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor

    from replication.reconcile.inline import _InTurn

    context = multiprocessing.get_context("fork")
    take, taken = _InTurn(list(range(300)), context), context.SimpleQueue()

    def drain():
        with ThreadPoolExecutor(4) as pool:
            for mine in pool.map(lambda _: list(iter(take, None)), range(4)):
                for index in mine:
                    taken.put(index)

    children = [context.Process(target=drain) for _ in range(2)]
    for child in children:
        child.start()
    drain()
    for child in children:
        child.join()
    handed_out = [taken.get() for _ in range(300)]

    assert sorted(handed_out) == list(range(300))
    assert taken.empty() and take() is None

"""The pure diff engine: every category, byte order, and the streaming merge's invariants."""

import ast
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.models import Discrepancy
from replication.reconcile import diff as diff_module
from replication.reconcile.checksums import (
    COMPOSITE,
    FULL_OBJECT,
    IN_SYNC,
    UNDECIDED,
    ObjectChecksum,
    compare_checksums,
    from_head,
    reclassify,
    settle,
    worth_checking,
)
from replication.reconcile.diff import (
    EXTRA,
    IN_FLIGHT,
    KINDS,
    MISMATCHED,
    MISSING,
    UNVERIFIED,
    Difference,
    Entry,
    ListingOrderError,
    Tally,
    compare,
    diff,
)
from replication.reconcile.ranges import BoundarySampler, KeyRange, split

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=1)
YOUNG = NOW - timedelta(seconds=10)
GRACE_CUTOFF = NOW - timedelta(minutes=15)

MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"
MULTIPART_A = "f3c0e6e5a8d0e3d2c1b0a9f8e7d6c5b4-2"
MULTIPART_B = "0a1b2c3d4e5f60718293a4b5c6d7e8f9-3"


def entry(key, size=1, etag=MD5_A, modified=OLD, checksum=None) -> Entry:
    return Entry(key, size, etag, modified, checksum)


def run_diff(source, backup):
    tally = Tally()
    found = [
        (d.kind, d.key) for d in diff(source, backup, in_flight_after=GRACE_CUTOFF, tally=tally)
    ]
    return found, tally


def test_identical_listings_have_no_differences_and_count_everything_in_sync():
    listing = [entry("a"), entry("b", size=5), entry("c", etag=MULTIPART_A)]
    found, tally = run_diff(listing, list(listing))
    assert found == []
    assert tally.in_sync == 3
    assert tally.source_objects == tally.destination_objects == 3
    assert tally.source_bytes == tally.destination_bytes == 7


def test_old_source_only_key_is_missing_and_backup_only_key_is_extra():
    found, tally = run_diff([entry("a"), entry("b")], [entry("b"), entry("c")])
    assert found == [(MISSING, "a"), (EXTRA, "c")]
    assert (tally.missing, tally.extra, tally.in_sync) == (1, 1, 1)


def test_reconcile_counts_young_objects_as_in_flight():
    found, tally = run_diff([entry("new", modified=YOUNG)], [])
    assert found == [(IN_FLIGHT, "new")]
    assert (tally.in_flight, tally.missing) == (1, 0)


def test_young_overwrite_not_yet_copied_is_in_flight_not_mismatched():
    found, _ = run_diff([entry("k", etag=MD5_B, modified=YOUNG)], [entry("k", etag=MD5_A)])
    assert found == [(IN_FLIGHT, "k")]


def test_different_sizes_are_mismatched_whatever_the_etags():
    found, _ = run_diff([entry("k", size=2, etag=MULTIPART_A)], [entry("k", size=3, etag=MD5_A)])
    assert found == [(MISMATCHED, "k")]


def test_same_size_different_single_part_etags_are_mismatched():
    found, _ = run_diff([entry("k", etag=MD5_A)], [entry("k", etag=MD5_B)])
    assert found == [(MISMATCHED, "k")]


def test_multipart_source_copied_single_part_is_unverified_not_mismatched():
    found, tally = run_diff([entry("big", size=9, etag=MULTIPART_A)], [entry("big", size=9)])
    assert found == [(UNVERIFIED, "big")]
    assert (tally.unverified, tally.mismatched, tally.in_sync) == (1, 0, 0)


def test_equal_multipart_etags_prove_equal_content():
    assert compare(entry("k", etag=MULTIPART_A), entry("k", etag=MULTIPART_A)) is None


def test_multipart_etags_of_different_part_boundaries_are_unverified():
    assert compare(entry("k", etag=MULTIPART_A), entry("k", etag=MULTIPART_B)) == UNVERIFIED


def test_full_object_checksums_decide_when_etags_cannot():
    source = entry("k", etag=MULTIPART_A, checksum="SHA256:abc")
    assert compare(source, entry("k", etag=MD5_A, checksum="SHA256:abc")) is None
    assert compare(source, entry("k", etag=MD5_A, checksum="SHA256:xyz")) == MISMATCHED
    # Different algorithms say nothing about each other.
    assert compare(source, entry("k", etag=MD5_A, checksum="CRC32:abc")) == UNVERIFIED


def test_composite_checksums_are_not_compared_across_part_layouts():
    source = entry("k", etag=MULTIPART_A, checksum="CRC32C:abc-2")
    assert compare(source, entry("k", etag=MD5_A, checksum="CRC32C:def")) == UNVERIFIED


def test_empty_buckets_have_nothing_to_report():
    found, tally = run_diff([], [])
    assert found == []
    assert tally == Tally()


def test_empty_backup_makes_every_old_source_key_missing():
    found, tally = run_diff([entry("a"), entry("b", modified=YOUNG)], [])
    assert found == [(MISSING, "a"), (IN_FLIGHT, "b")]
    assert tally.destination_objects == 0


def test_empty_source_makes_every_backup_key_extra():
    found, tally = run_diff([], [entry("a"), entry("b")])
    assert found == [(EXTRA, "a"), (EXTRA, "b")]
    assert tally.source_objects == 0


# --- Order ------------------------------------------------------------------------------------

# U+FF5E (3 UTF-8 bytes, EF BD 9E) sorts before U+1F600 (4 bytes, F0 9F 98 80) in UTF-8, as S3
# lists them; in UTF-16 (Java, JavaScript) the emoji's surrogate D83D sorts first. U+E000, a
# private-use character, is the other classic: after surrogates in code points, before in UTF-16.
S3_ORDER = ["a", "a b", "a+b", "a/b", "z", "\u00e9", "\ue000", "\uff5e", "\U0001f600"]


def test_merge_order_is_s3s_utf8_byte_order():
    assert sorted(S3_ORDER, key=lambda k: k.encode("utf-8")) == S3_ORDER
    utf16_order = sorted(S3_ORDER, key=lambda k: k.encode("utf-16-be"))
    assert utf16_order != S3_ORDER, "the fixture must contain keys UTF-16 order disagrees on"

    source = [entry(k) for k in S3_ORDER]
    backup = [entry(k) for k in S3_ORDER if k != "\uff5e"]
    found, tally = run_diff(source, backup)
    # A merge in the wrong order would report pairs of missing/extra instead of one missing.
    assert found == [(MISSING, "\uff5e")]
    assert tally.in_sync == len(S3_ORDER) - 1


@given(
    st.dictionaries(
        st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6),
        st.sampled_from(["same", "source", "backup", "changed"]),
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None)
def test_merge_of_utf8_sorted_listings_finds_exactly_the_set_differences(keys):
    def utf8_sorted(entries):
        return sorted(entries, key=lambda e: e.key.encode("utf-8"))

    source = utf8_sorted(entry(k) for k, where in keys.items() if where != "backup")
    backup = utf8_sorted(
        entry(k, etag=MD5_B if where == "changed" else MD5_A)
        for k, where in keys.items()
        if where != "source"
    )
    found, tally = run_diff(source, backup)
    expected = {
        (MISSING, k) if where == "source" else (EXTRA, k) if where == "backup" else (MISMATCHED, k)
        for k, where in keys.items()
        if where != "same"
    }
    assert set(found) == expected
    assert tally.in_sync == sum(1 for where in keys.values() if where == "same")


def test_out_of_order_listing_is_refused_rather_than_misreported():
    with pytest.raises(ListingOrderError, match="backup listing is out of order"):
        run_diff([entry("a"), entry("b")], [entry("b"), entry("a")])


def test_duplicate_key_in_a_listing_is_refused():
    with pytest.raises(ListingOrderError, match="source listing"):
        run_diff([entry("a"), entry("a")], [])


def test_diff_consumes_its_inputs_lazily():
    def endless():
        n = 0
        while True:
            yield entry(f"{n:012d}")
            n += 1

    differences = diff(endless(), iter([]), in_flight_after=GRACE_CUTOFF)
    first = [next(differences) for _ in range(3)]
    assert [d.key for d in first] == ["000000000000", "000000000001", "000000000002"]


# --- Ranges -----------------------------------------------------------------------------------


def test_split_ranges_cover_every_key_exactly_once():
    ranges = split(["d", "m", "t"], max_ranges=16)
    assert ranges == [KeyRange(None, "d"), KeyRange("d", "m"), KeyRange("m", "t"), KeyRange("t")]
    for key in ["", "a", "d", "e", "m", "s", "t", "u", "\U0001f600"]:
        assert sum(r.contains(key) for r in ranges) == 1


def test_split_keeps_at_most_max_ranges_of_as_many_boundaries_each():
    boundaries = [f"{n:03d}" for n in range(100)]  # 101 pieces between and around them
    ranges = split(boundaries, max_ranges=4)

    assert [r.end for r in ranges] == ["024", "049", "074", None]
    pieces = [sum(r.contains(b) for b in boundaries) for r in ranges]
    assert pieces == [25, 25, 25, 25]  # and the last holds what is past "099"


@pytest.mark.parametrize(("boundaries", "max_ranges"), [(99, 16), (16, 16), (1000, 7), (5, 2)])
def test_split_ranges_differ_by_at_most_one_piece(boundaries, max_ranges):
    keys = [f"{n:05d}" for n in range(boundaries)]
    ranges = split(keys, max_ranges)
    # a piece is what lies between two neighbouring boundaries: count the key ending each one
    pieces = [sum(r.contains(k) for k in keys) + (r.end is None) for r in ranges]

    assert len(ranges) == min(max_ranges, boundaries + 1)
    assert sum(pieces) == boundaries + 1
    assert max(pieces) - min(pieces) <= 1


def test_split_without_boundaries_is_one_open_range():
    assert split([], max_ranges=8) == [KeyRange()]


def test_sampler_records_every_nth_key():
    sampler = BoundarySampler(every=3)
    for key in "abcdefgh":
        sampler.see(key)
    assert sampler.boundaries == ["c", "f"]


@pytest.mark.parametrize("every", [1, 2, 3, 7])
@pytest.mark.parametrize("pages", [[8], [1, 7], [2, 2, 4], [3, 0, 5], [1] * 8])
def test_sampler_seeing_pages_at_once_records_what_seeing_each_key_does(every, pages):
    keys = iter("abcdefgh")
    one_by_one, by_page = BoundarySampler(every), BoundarySampler(every)
    for size in pages:
        page = [entry(next(keys)) for _ in range(size)]
        for e in page:
            one_by_one.see(e.key)
        by_page.see_all(page, key=lambda e: e.key)
    assert by_page.boundaries == one_by_one.boundaries
    assert by_page.seen == one_by_one.seen == 8


def test_in_sync_objects_are_yielded_only_as_asked():
    source = [entry("a"), entry("b", etag=MD5_B), entry("c"), entry("d"), entry("e")]
    backup = [entry("a"), entry("b"), entry("c"), entry("e")]
    asked = []

    def chosen(key):
        asked.append(key)
        return key in ("c", "e")

    def found(in_sync):
        return [
            (d.kind, d.key)
            for d in diff(source, backup, in_flight_after=GRACE_CUTOFF, in_sync=in_sync)
        ]

    assert found(False) == [(MISMATCHED, "b"), (MISSING, "d")]
    assert found(True) == [
        ("in_sync", "a"),
        (MISMATCHED, "b"),
        ("in_sync", "c"),
        (MISSING, "d"),
        ("in_sync", "e"),
    ]
    assert found(chosen) == [(MISMATCHED, "b"), ("in_sync", "c"), (MISSING, "d"), ("in_sync", "e")]
    assert asked == ["a", "c", "e"]  # every in-sync key, in key order, and nothing else


def test_range_results_add_up_like_one_pass():
    source = [entry(f"k{n:02d}", etag=MD5_B if n % 7 == 0 else MD5_A) for n in range(40)]
    backup = [entry(f"k{n:02d}") for n in range(5, 45)]
    _, whole = run_diff(source, backup)
    combined = Tally()
    for r in split(["k10", "k20", "k33"], max_ranges=4):
        _, part = run_diff(
            [e for e in source if r.contains(e.key)], [e for e in backup if r.contains(e.key)]
        )
        combined.add(part)
    assert combined == whole


# --- Checksums: the second opinion ------------------------------------------------------------

SUM_A = "AAAAAAAAAAA="
SUM_B = "BBBBBBBBBBB="


def full(value=SUM_A, algorithm="CRC64NVME", etag=MD5_A, size=1) -> ObjectChecksum:
    return ObjectChecksum(etag, size, algorithm, value, FULL_OBJECT)


def composite(value, algorithm="CRC32C", etag=MULTIPART_A, size=1) -> ObjectChecksum:
    return ObjectChecksum(etag, size, algorithm, value, COMPOSITE)


def test_equal_full_object_checksums_prove_equal_content_across_part_layouts():
    assert compare_checksums(full(etag=MULTIPART_A), full(etag=MD5_B)) == IN_SYNC


def test_different_full_object_checksums_prove_different_content():
    assert compare_checksums(full(SUM_A), full(SUM_B)) == MISMATCHED


def test_checksums_of_different_algorithms_or_a_missing_one_decide_nothing():
    assert compare_checksums(full(algorithm="CRC64NVME"), full(algorithm="SHA256")) == UNDECIDED
    assert compare_checksums(ObjectChecksum(MD5_A, 1), full()) == UNDECIDED
    assert compare_checksums(full(), ObjectChecksum(MD5_A, 1)) == UNDECIDED


def test_full_object_checksum_against_a_composite_one_decides_nothing():
    assert compare_checksums(full(SUM_A, "CRC32C"), composite(SUM_A + "-2")) == UNDECIDED


def test_equal_composite_checksums_of_as_many_parts_prove_equal_content():
    assert compare_checksums(composite(SUM_A + "-3"), composite(SUM_A + "-3")) == IN_SYNC


def test_different_composite_checksums_are_undecided_since_part_sizes_may_differ():
    # The same bytes cut at other boundaries (same part count) give another composite value.
    assert compare_checksums(composite(SUM_A + "-3"), composite(SUM_B + "-3")) == UNDECIDED


def test_composite_checksums_of_different_part_counts_are_undecided():
    assert compare_checksums(composite(SUM_A + "-2"), composite(SUM_B + "-3")) == UNDECIDED
    # Composite values without the suffix (moto's) take the part count from the ETag.
    two = composite(SUM_A, etag=MULTIPART_A)
    assert compare_checksums(two, composite(SUM_A, etag=MULTIPART_B)) == UNDECIDED
    assert compare_checksums(two, composite(SUM_A, etag=MULTIPART_A)) == IN_SYNC


def test_head_response_gives_version_algorithm_value_and_type():
    head = from_head(
        {
            "ETag": f'"{MULTIPART_A}"',
            "ContentLength": 7,
            "ChecksumCRC64NVME": SUM_A,
            "ChecksumType": "FULL_OBJECT",
        }
    )
    assert head == ObjectChecksum(MULTIPART_A, 7, "CRC64NVME", SUM_A, FULL_OBJECT)


def test_head_without_checksum_type_is_inferred_only_where_it_is_certain():
    single = from_head({"ETag": f'"{MD5_A}"', "ContentLength": 1, "ChecksumSHA256": SUM_A})
    suffixed = from_head(
        {"ETag": f'"{MULTIPART_A}"', "ContentLength": 1, "ChecksumCRC32": SUM_A + "-2"}
    )
    unknown = from_head({"ETag": f'"{MULTIPART_A}"', "ContentLength": 1, "ChecksumCRC32": SUM_A})
    assert single.type == FULL_OBJECT  # a single PUT's checksum covers the whole object
    assert suffixed.type == COMPOSITE
    assert unknown.type is None
    assert compare_checksums(unknown, full(SUM_A, "CRC32")) == UNDECIDED


def test_head_without_any_checksum_has_no_algorithm():
    assert from_head({"ETag": f'"{MD5_A}"', "ContentLength": 1}) == ObjectChecksum(MD5_A, 1)


def unverified_pair(key="k") -> Difference:
    return Difference(UNVERIFIED, key, entry(key, etag=MULTIPART_A), entry(key, etag=MD5_A))


def test_settle_decides_from_heads_that_saw_the_listed_versions():
    difference = unverified_pair()
    assert settle(difference, full(etag=MULTIPART_A), full(etag=MD5_A)) == IN_SYNC
    assert settle(difference, full(SUM_A, etag=MULTIPART_A), full(SUM_B)) == MISMATCHED


def test_settle_is_undecided_when_a_head_failed_or_saw_another_version():
    difference = unverified_pair()
    assert settle(difference, None, full(etag=MD5_A)) == UNDECIDED
    assert settle(difference, full(etag=MULTIPART_A), None) == UNDECIDED
    # Overwritten since the listing: the HEAD describes an object the counts are not about.
    assert settle(difference, full(etag=MULTIPART_B), full(etag=MD5_A)) == UNDECIDED
    assert settle(difference, full(etag=MULTIPART_A, size=2), full(etag=MD5_A)) == UNDECIDED


def test_only_unverified_and_same_size_mismatches_are_worth_a_checksum():
    same_size = Difference(MISMATCHED, "k", entry("k", etag=MD5_A), entry("k", etag=MD5_B))
    other_size = Difference(MISMATCHED, "k", entry("k", size=2), entry("k", size=3))
    young = Difference(IN_FLIGHT, "k", entry("k", etag=MULTIPART_A), entry("k"))
    assert worth_checking(unverified_pair())
    assert worth_checking(same_size)
    assert not worth_checking(other_size)
    assert not worth_checking(young)
    assert not worth_checking(Difference(MISSING, "k", entry("k"), None))
    assert not worth_checking(Difference(EXTRA, "k", None, entry("k")))


def settled_diff(source, backup, verdicts):
    """run_diff, then each difference re-classified by ``verdicts[key]`` (UNDECIDED if absent)."""
    tally = Tally()
    kept = []
    for d in diff(source, backup, in_flight_after=GRACE_CUTOFF, tally=tally):
        result = reclassify(d, verdicts.get(d.key, UNDECIDED), tally)
        if result.kind != IN_SYNC:
            kept.append((result.kind, result.key))
    return kept, tally


def assert_counts_add_up(tally: Tally) -> None:
    # No young object in these listings: every object is in exactly one category.
    in_both = tally.in_sync + tally.mismatched + tally.unverified
    assert tally.in_flight == 0
    assert tally.source_objects == in_both + tally.missing
    assert tally.destination_objects == in_both + tally.extra


def test_checksum_verdicts_move_objects_between_counts_which_still_add_up():
    source = [
        entry("equal", etag=MULTIPART_A),
        entry("kms", etag=MD5_A),
        entry("missing"),
        entry("other", etag=MULTIPART_A),
        entry("unknown", etag=MULTIPART_A),
    ]
    backup = [
        entry("equal"),
        entry("extra"),
        entry("kms", etag=MD5_B),
        entry("other"),
        entry("unknown"),
    ]
    verdicts = {"equal": IN_SYNC, "kms": IN_SYNC, "other": MISMATCHED}

    kept, tally = settled_diff(source, backup, verdicts)

    assert kept == [
        (EXTRA, "extra"),
        (MISSING, "missing"),
        (MISMATCHED, "other"),
        (UNVERIFIED, "unknown"),
    ]
    assert (tally.in_sync, tally.mismatched, tally.unverified) == (2, 1, 1)
    assert tally.checksum_settled == 3
    assert_counts_add_up(tally)


def test_a_mismatch_confirmed_by_checksums_is_not_counted_as_settled():
    source, backup = [entry("k", etag=MD5_A)], [entry("k", etag=MD5_B)]
    kept, tally = settled_diff(source, backup, {"k": MISMATCHED})
    assert kept == [(MISMATCHED, "k")]
    assert (tally.mismatched, tally.checksum_settled) == (1, 0)
    assert_counts_add_up(tally)


# --- Purity and vocabulary --------------------------------------------------------------------


def test_diff_kinds_are_the_stored_discrepancy_kinds():
    assert set(KINDS) == set(Discrepancy.Kind.values)


@pytest.mark.parametrize("module", ["diff", "ranges", "checksums"])
def test_pure_modules_import_only_the_standard_library_and_each_other(module):
    path = Path(diff_module.__file__).with_name(f"{module}.py")
    tree = ast.parse(path.read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    pure = {f"replication.reconcile.{name}" for name in ("diff", "ranges", "checksums")}
    assert all(name.split(".")[0] in sys.stdlib_module_names or name in pure for name in imported)

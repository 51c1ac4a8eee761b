"""The restore plan and its checks, as pure functions: no S3, no database."""

from datetime import UTC, datetime, timedelta

import pytest

from replication.restore.plan import (
    Choice,
    Target,
    Totals,
    choose,
    counted,
    empty_plan_problem,
    parse_time,
    plan,
    target_problem,
    time_problem,
)
from replication.restore.plan import Version as V

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_plan_takes_the_newest_version_at_or_before_the_time():
    versions = [
        V("a", "3", at(30), 3, "e3"),
        V("a", "2", at(20), 2, "e2"),
        V("a", "1", at(10), 1, "e1"),
    ]

    assert choose(versions, at(25)).version.version_id == "2"
    assert choose(versions, at(20)).version.version_id == "2"  # inclusive
    assert choose(versions, at(99)).version.version_id == "3"


def test_plan_skips_a_key_whose_newest_entry_then_is_a_delete_marker():
    versions = [V("a", "m", at(20), 0, "", is_delete_marker=True), V("a", "1", at(10), 1, "e1")]

    assert choose(versions, at(25)) == Choice("a", None, deleted=True)
    assert choose(versions, at(15)).version.version_id == "1"


def test_plan_says_a_key_first_written_later_did_not_exist_then():
    assert choose([V("a", "1", at(10), 1, "e1")], at(5)) == Choice("a", None, deleted=False)


def test_plan_orders_by_time_not_by_listing_order_and_prefers_the_latest_among_equals():
    # moto lists a key's delete markers after its versions, whatever their times.
    versions = [
        V("a", "v", at(10), 1, "e1", is_latest=False),
        V("a", "m", at(10), 0, "", is_delete_marker=True, is_latest=True),
    ]

    assert choose(versions, at(10)).deleted


def test_plan_yields_one_choice_per_key_in_key_order_across_pages():
    versions = [
        V("a", "2", at(20), 2, "x"),
        V("a", "1", at(10), 1, "y"),
        V("b", "1", at(10), 1, "z"),
        V("c", "m", at(5), 0, "", is_delete_marker=True),
    ]

    choices = list(plan(iter(versions), at(15)))

    assert [(c.key, c.version and c.version.version_id, c.deleted) for c in choices] == [
        ("a", "1", False),
        ("b", "1", False),
        ("c", None, True),
    ]


def test_plan_holds_one_key_at_a_time():
    seen = []

    def versions():
        for n in range(1000):
            seen.append(n)
            yield V(f"k{n:04}", "1", at(1), 1, "e")

    choices = plan(versions(), at(5))
    next(choices)

    assert seen == [0, 1]  # the first key is decided as soon as the second one starts


def test_totals_count_objects_bytes_deletes_absences_and_the_oldest_version():
    totals = Totals()
    versions = [
        V("a", "1", at(10), 7, "e"),
        V("b", "m", at(3), 0, "", is_delete_marker=True),
        V("c", "1", at(50), 1, "e"),
    ]

    for choice in plan(counted(versions, totals), at(20)):
        totals.add(choice)

    assert (totals.objects, totals.bytes, totals.deleted, totals.absent) == (1, 7, 1, 1)
    assert totals.oldest == at(3)


def test_parse_time_reads_iso_8601_as_utc_without_an_offset():
    now = at(0)
    assert parse_time("2026-11-01T13:00:00", now) == at(60)
    assert parse_time("2026-11-01T14:00:00+01:00", now) == at(60)
    assert parse_time("2026-11-01T13:00:00Z", now) == at(60)
    assert parse_time(" now ", now) == now
    with pytest.raises(ValueError, match="is not a time"):
        parse_time("last tuesday", now)


def test_time_problem_refuses_the_future_and_the_past_without_versioning():
    assert "in the future" in time_problem(at(10), at(0), versioned=True)
    assert time_problem(at(-600), at(0), versioned=True) == ""
    assert "does not keep versions" in time_problem(at(-10), at(0), versioned=False)
    assert time_problem(at(0), at(0), versioned=False) == ""


def test_an_empty_plan_says_whether_the_time_is_before_the_oldest_version():
    before = Totals(absent=3, oldest=at(10))
    assert "before the oldest backup version" in empty_plan_problem(before, at(5), "")
    deleted = Totals(deleted=3, oldest=at(1))
    assert "was deleted" in empty_plan_problem(deleted, at(5), "docs/")
    assert "holds no versions under 'docs/'" in empty_plan_problem(Totals(), at(5), "docs/")
    assert empty_plan_problem(Totals(objects=1), at(5), "") == ""


SOURCE = Target("src", "docs/")
BACKUP = Target("bak", "")


@pytest.mark.parametrize(
    "target, allowed",
    [
        (Target("elsewhere", ""), True),
        (Target("src", "restored/"), True),  # the source bucket outside its prefix
        (Target("src", "docs/old/"), False),
        (Target("src", ""), False),  # contains the source prefix
        (Target("bak", "restored/"), False),
        (Target("bak", ".backupsite/restores/"), True),
        (Target("bak", ".backupsite/"), True),
    ],
)
def test_a_target_inside_the_pairs_prefixes_is_refused_except_the_reserved_prefix(target, allowed):
    problem = target_problem(target, source=SOURCE, backup=BACKUP)
    assert (problem == "") is allowed


def test_the_reserved_prefix_belongs_to_the_backup_bucket_only():
    target = Target("src", ".backupsite/x/")
    assert target_problem(target, source=Target("src", ""), backup=BACKUP)

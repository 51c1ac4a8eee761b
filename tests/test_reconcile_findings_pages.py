"""A reconcile range reads its pair's open problems and kept keys a page at a time, in S3's
key order (UTF-8 bytes), each page from an index in that order: a million problems cost a
thousand short index scans, not a thousand sorts of a million rows."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from replication.models import ObjectState
from replication.reconcile import findings
from replication.reconcile.findings import kept_keys, problem_keys
from replication.reconcile.ranges import KeyRange
from tests.factories import make_pair

pytestmark = pytest.mark.django_db

# Keys whose byte order differs from PostgreSQL's default collation (case, punctuation,
# accents, a key that is a prefix of others, characters beyond the Basic Multilingual Plane).
KEYS = ["a", "a b", "a-b", "a_b", "a~", "B", "b", "Z", "é", "ä/1", "z", "日本", "😀", "a/", "a/b"]


def open_failure(pair, key: str) -> None:
    now = timezone.now()
    ObjectState.objects.create(
        pair=pair,
        key=key,
        event_name="ObjectCreated:Put",
        event_time=now - timedelta(minutes=5),
        sequencer="0A",
        sequencer_order="0A".ljust(32, "0"),
        status="failed",
        finished_at=now - timedelta(minutes=5),
    )


def in_byte_order(keys):
    return sorted(keys, key=lambda k: k.encode())


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(findings, "_PAGE", 2)


@pytest.mark.parametrize(
    "bounds",
    [
        KeyRange(),
        KeyRange(None, "a_b"),
        KeyRange("a_b", None),
        KeyRange("B", "é"),
        KeyRange("a/", "a/b"),
    ],
)
def test_problem_keys_come_in_byte_order_across_pages_within_the_range(small_pages, bounds):
    pair = make_pair(source_prefix="logs/")
    for key in KEYS:
        open_failure(pair, "logs/" + key)
    open_failure(pair, "logr/outside")  # sorts before the prefix
    open_failure(pair, "logs0")  # sorts after every key of the prefix, outside it
    open_failure(make_pair(name="other", source_bucket="src-2", backup_bucket="bak-2"), "logs/a")

    found = list(problem_keys(pair.id, "logs/", bounds))

    assert found == in_byte_order(k for k in KEYS if bounds.contains(k))


def test_kept_keys_come_in_byte_order_across_pages(small_pages):
    pair = make_pair()
    now = timezone.now()
    for key in KEYS:
        ObjectState.objects.create(
            pair=pair, key=key, finding="kept", finding_at=now, kept_etag="e1", kept_at=now
        )

    found = [key for key, _, _ in kept_keys(pair.id, "", KeyRange())]

    assert found == in_byte_order(KEYS)


def plans_of(queries) -> list[str]:
    plans = []
    with connection.cursor() as cursor:
        # With a handful of rows a sequential scan is cheapest; these settings ask what the
        # planner would do with a large table: read an index if one gives the order, or sort.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        for query in queries:
            cursor.execute("EXPLAIN " + query["sql"])
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


@pytest.mark.postgres
@pytest.mark.parametrize("read", ["problems", "kept"])
def test_every_page_is_read_from_an_index_in_key_order_without_sorting(small_pages, read):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): the plan is PostgreSQL's")
    pair = make_pair()
    now = timezone.now()
    for key in KEYS:
        if read == "problems":
            open_failure(pair, key)
        else:
            ObjectState.objects.create(
                pair=pair, key=key, finding="kept", finding_at=now, kept_etag="e1", kept_at=now
            )
    reader = problem_keys if read == "problems" else kept_keys

    with CaptureQueriesContext(connection) as queries:
        assert len(list(reader(pair.id, "", KeyRange("a", "z")))) == 8
    plans = plans_of(queries)

    assert len(plans) == 5  # four full pages of two, then an empty one
    index = "object_state_problems_idx" if read == "problems" else "object_state_kept_idx"
    for plan in plans:
        assert index in plan, plan
        assert "Sort" not in plan, plan

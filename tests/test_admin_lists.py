"""The admin's lists of tables that grow with every copy stay fast at any size: a fixed
number of queries per page, an index for the default order, and no count of every row."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from replication.admin import CopyEventAdmin, EstimatedCountPaginator, ObjectStateAdmin
from replication.models import CopyEvent, Discrepancy, ObjectState, ReconcileRun
from tests.factories import make_pair, record_events

pytestmark = pytest.mark.django_db

# Session, user, the pairs of the list filter, the page's rows; and the count.
MAX_QUERIES = 6


def states_each_found_by_its_own_run(count: int) -> None:
    pairs = [make_pair(name=f"p{i}") for i in range(3)]
    now = timezone.now()
    for i in range(count):
        pair = pairs[i % 3]
        run = ReconcileRun.objects.create(pair=pair, status="succeeded", verdict="out_of_sync")
        ObjectState.objects.create(
            pair=pair, key=f"k{i}", finding="missing", finding_run=run, finding_at=now
        )


def test_the_object_state_list_runs_the_same_queries_for_30_rows_as_for_one(
    admin_client, django_assert_max_num_queries
):
    states_each_found_by_its_own_run(30)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(reverse("admin:replication_objectstate_changelist"))
    assert response.status_code == 200
    assert response.content.decode().count("reconcile #") == 30


def test_the_copy_event_list_runs_the_same_queries_for_30_rows_as_for_one(
    admin_client, django_assert_max_num_queries
):
    for i in range(3):
        pair = make_pair(name=f"p{i}", source_bucket=f"src-{i}", backup_bucket=f"bak-{i}")
        record_events(pair, *[{"status": "copied"} for _ in range(10)])
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(reverse("admin:replication_copyevent_changelist"))
    assert response.status_code == 200
    assert CopyEvent.objects.count() == 30


def test_the_discrepancy_list_runs_a_fixed_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    pair = make_pair()
    for i in range(10):
        run = ReconcileRun.objects.create(pair=pair, status="succeeded", verdict="out_of_sync")
        Discrepancy.objects.create(run=run, key=f"k{i}", kind="missing")
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(reverse("admin:replication_discrepancy_changelist"))
    assert response.status_code == 200


def test_the_copy_event_lists_default_order_has_an_index_of_its_own():
    ordering = list(CopyEvent._meta.ordering)
    assert ordering == ["-finished_at", "-id"]
    assert any(list(index.fields) == ordering for index in CopyEvent._meta.indexes)


def test_the_object_state_lists_order_is_the_unique_keys_index():
    (unique,) = [c for c in ObjectState._meta.constraints if c.name == "object_state_unique_key"]
    assert ObjectStateAdmin.ordering == ["pair_id", "key"]
    assert [ObjectState._meta.get_field(f).attname for f in unique.fields] == ["pair_id", "key"]


def test_large_lists_show_no_total_count():
    assert CopyEventAdmin.show_full_result_count is False
    assert ObjectStateAdmin.show_full_result_count is False


@pytest.mark.postgres
def test_a_large_list_is_paged_on_the_planners_estimate_not_a_count_of_every_row(
    admin_client, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): the estimate is the planner's")
    monkeypatch.setattr(EstimatedCountPaginator, "EXACT_BELOW", 1)
    pair = make_pair()
    long_ago = timezone.now() - timedelta(days=1)
    record_events(pair, *[{"status": "copied", "finished_at": long_ago} for _ in range(3)])
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:replication_copyevent_changelist"))
    assert response.status_code == 200
    assert not [q for q in queries if "COUNT(" in q["sql"].upper()]


def test_a_small_list_is_counted_exactly(admin_client):
    pair = make_pair()
    record_events(pair, *[{"status": "copied"} for _ in range(3)])
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:replication_copyevent_changelist"))
    assert "3 copy events" in response.content.decode()
    assert len([q for q in queries if "COUNT(" in q["sql"].upper()]) == 1

"""``__any``: membership in a list of ids as one parameter (replication/models/lookups.py)."""

import pytest
from django.db import connection

from replication.models import BucketPair, HealthChange
from tests.factories import make_pair

pytestmark = pytest.mark.django_db


def test_any_finds_the_rows_whose_id_is_listed_and_no_others():
    first, second, third = make_pair(), make_pair(), make_pair()
    found = BucketPair.objects.filter(pk__any=[first.pk, third.pk, 10**9])
    assert set(found) == {first, third}
    assert second not in found


def test_any_of_no_ids_finds_nothing():
    make_pair()
    assert list(BucketPair.objects.filter(pk__any=[])) == []


def test_any_works_through_a_foreign_key_as_through_its_column():
    pair, other = make_pair(), make_pair()
    for target in (pair, other):
        HealthChange.objects.create(pair=target, sequence=1, to_state="ok", reason="fine")
    assert [c.pair for c in HealthChange.objects.filter(pair_id__any=[pair.pk])] == [pair]
    assert [c.pair for c in HealthChange.objects.filter(pair__any=[pair.pk])] == [pair]


def test_any_sends_a_thousand_ids_as_one_parameter_on_postgresql():
    query = BucketPair.objects.filter(pk__any=list(range(1000))).query
    sql, params = query.sql_with_params()
    if connection.vendor == "postgresql":
        assert "= ANY(" in sql
        assert len(params) == 1
    else:
        assert sql.count("%s") == len(params) == 1000

"""Timestamps read from PostgreSQL by the compiled loader (backupsite/postgres.py) are the
values Django's own loader gives: exact to the microsecond, in UTC."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from replication.models import HealthChange
from tests.factories import make_pair
from tests.postgresql import requires_postgresql

pytestmark = [pytest.mark.django_db, requires_postgresql("the loader is PostgreSQL's")]


def test_timestamps_come_back_exact_and_in_utc():
    moments = [
        datetime(2026, 12, 6, 13, 11, 46, 383989, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7))),  # stored as UTC
    ]
    for moment in moments:
        HealthChange.objects.create(
            pair=make_pair(), sequence=1, to_state="ok", reason="ok", at=moment
        )
    read = list(HealthChange.objects.order_by("id").values_list("at", flat=True))
    assert read == moments
    assert all(value.utcoffset() == timedelta(0) and value.tzinfo is connection.timezone
               for value in read)  # fmt: skip


def test_every_connection_reads_timestamps_with_the_compiled_loader():
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        assert cursor.fetchone()[0].tzinfo is connection.timezone
    loader = connection.connection.adapters.get_loader(
        connection.connection.adapters.types["timestamptz"].oid, 0
    )
    assert loader.__name__ == "CompiledTimestamptzLoader"

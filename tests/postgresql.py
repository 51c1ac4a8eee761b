"""Marking what only PostgreSQL can show, saying why (CI always runs it)."""

import pytest
from django.db import connection


def requires_postgresql(why: str):
    """A mark: skip the test unless the database is PostgreSQL, saying ``why``."""
    return pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason=f"needs PostgreSQL (set DATABASE_URL; CI does): {why}",
    )

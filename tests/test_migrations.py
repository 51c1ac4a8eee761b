"""The suite builds tables from the models (--no-migrations, for speed); these tests prove the
migrations agree with the models and apply from scratch, on SQLite and, where DATABASE_URL
names one, on PostgreSQL. They run manage.py in a subprocess, as a deployment would."""

import os
import subprocess
import sys
import uuid

import dj_database_url
import pytest

from tests.conftest import ROOT


def manage(*args: str, database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrations_match_the_models(tmp_path):
    result = manage(
        "makemigrations", "--check", "--dry-run", database_url=f"sqlite:///{tmp_path}/db"
    )
    assert result.returncode == 0, f"Models changed without a migration:\n{result.stdout}"


def test_migrations_apply_to_an_empty_sqlite_database(tmp_path):
    result = manage("migrate", "--noinput", database_url=f"sqlite:///{tmp_path}/db")
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_apply_to_an_empty_postgresql_database():
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("DATABASE_URL is not PostgreSQL: migrations are checked on SQLite only")
    import psycopg

    config = dj_database_url.parse(url)
    name = f"migrate_check_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(
        host=config["HOST"],
        port=config["PORT"] or 5432,
        user=config["USER"],
        password=config["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        scratch = url.rsplit("/", 1)[0] + "/" + name
        result = manage("migrate", "--noinput", database_url=scratch)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()

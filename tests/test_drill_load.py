"""Drill: ingest under load. 20,000 events from 8 concurrent senders to gunicorn + PostgreSQL,
10% of them posted twice and 10% out of sequencer order: exactly 20,000 stored, and every
object's state is its greatest sequencer's.

Runs against a database of its own on the PostgreSQL of DATABASE_URL, through real HTTP and a
real gunicorn, as the Lambda reaches the site in production.
"""

import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import dj_database_url
import psycopg
import pytest

from replication.ingest.signing import sign
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SOURCE, BACKUP = "drill-src", "drill-bak"
OBJECTS, WRITES_PER_OBJECT = 2_000, 10  # 20,000 distinct events
SENDERS, PER_POST = 8, 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def migrated_database(admin: dict):
    """A fresh, migrated database on the server ``admin`` reaches, with one pair and one key.

    Yields (environment for manage.py and gunicorn, its psycopg parameters, key id, secret).
    """
    name = f"drill_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    drill_url = f"postgres://{admin['user']}@{admin['host']}:{admin['port']}/{name}"
    env = {**os.environ, "DATABASE_URL": drill_url, "LOG_LEVEL": "WARNING"}
    try:
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        seed = (
            "from replication.models import BucketPair, IngestKey\n"
            f"BucketPair.objects.create(name='drill', source_bucket='{SOURCE}', "
            f"backup_bucket='{BACKUP}')\n"
            "k = IngestKey.objects.create(name='drill')\n"
            "print(k.key_id, k.secret)\n"
        )
        out = subprocess.run(
            [*manage, "shell", "-c", seed], cwd=ROOT, env=env, check=True, capture_output=True
        )
        key_id, secret = out.stdout.decode().split()[-2:]
        yield env, {**admin, "dbname": name}, key_id, secret
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def drill_database():
    """A database of its own beside DATABASE_URL's (CI's PostgreSQL)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): the drill loads a real one")
    config = dj_database_url.parse(url)
    admin = {
        "host": config["HOST"] or "127.0.0.1",
        "port": config["PORT"] or 5432,
        "user": config["USER"],
        "dbname": "postgres",
    }
    with migrated_database(admin) as database:
        yield database


@contextlib.contextmanager
def running_gunicorn(env: dict):
    """gunicorn serving the site on a free port against ``env``'s database; yields the port."""
    port = _free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "backupsite.wsgi"),
            *("--bind", f"127.0.0.1:{port}", "--workers", "2"),
            *("--worker-class", "gthread", "--threads", "4", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env={**env, "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not answer /healthz within 60 s"
            time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def gunicorn(drill_database):
    with running_gunicorn(drill_database[0]) as port:
        yield port


def the_events(rng: random.Random) -> tuple[list[dict], int, int]:
    """Every write of every object, in S3's order except 10% held back to arrive late, and
    10% sent a second time. Returns (events to send, late ones, repeated ones)."""
    events = [
        {
            "source_bucket": SOURCE,
            "destination_bucket": BACKUP,
            "key": f"drill/{obj:05d}.bin",
            "event_name": "ObjectCreated:Put",
            "event_time": "2026-11-27T12:00:00.000Z",
            "sequencer": f"{obj * WRITES_PER_OBJECT + write + 1:018X}",
            "size": write,
            "etag": f'"{write:032x}"',
            "status": "copied",
            "finished_at": "2026-11-27T12:00:01.000Z",
            "attempt": 1,
        }
        for obj in range(OBJECTS)
        for write in range(WRITES_PER_OBJECT)
    ]
    total = len(events)
    late = set(rng.sample(range(total), total // 10))
    ordered = [e for i, e in enumerate(events) if i not in late]
    ordered += [events[i] for i in sorted(late)]  # older writes, after newer ones
    repeats = rng.sample(events, total // 10)
    for event in repeats:
        ordered.insert(rng.randrange(len(ordered) + 1), event)
    return ordered, len(late), len(repeats)


def send(port: int, key_id: str, secret: str, batches: list[list[dict]], outcome: dict) -> None:
    """Post each batch, retrying what the server could not take (503, lost connection)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for batch in batches:
        body = json.dumps({"events": batch}).encode()
        for attempt in range(20):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Backup-Key": key_id,
                "X-Backup-Timestamp": timestamp,
                "X-Backup-Signature": sign(secret, timestamp, body),
            }
            try:
                conn.request("POST", "/api/v1/events", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                outcome["retries"] += 1
                time.sleep(0.2 * (attempt + 1))
                continue
            outcome["statuses"][response.status] = outcome["statuses"].get(response.status, 0) + 1
            if response.status == 503:
                outcome["retries"] += 1
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status == 202:
                result = json.loads(answer)
                outcome["accepted"] += result["accepted"]
                outcome["duplicates"] += result["duplicates"]
                outcome["rejected"] += len(result["rejected"])
            break
        else:
            outcome["gave_up"] += 1


def drive_load(port: int, key_id: str, secret: str, during=None) -> dict:
    """Send the drill's events with 8 senders; run ``during(progress)`` alongside them."""
    events, late, repeats = the_events(random.Random(20261128))
    batches = [events[i : i + PER_POST] for i in range(0, len(events), PER_POST)]
    outcomes = [
        {"statuses": {}, "accepted": 0, "duplicates": 0, "rejected": 0, "retries": 0, "gave_up": 0}
        for _ in range(SENDERS)
    ]
    senders = [
        threading.Thread(target=send, args=(port, key_id, secret, batches[n::SENDERS], outcomes[n]))
        for n in range(SENDERS)
    ]
    began = time.monotonic()
    for sender in senders:
        sender.start()
    if during is not None:
        during(lambda: sum(o["accepted"] for o in outcomes))
    for sender in senders:
        sender.join()
    seconds = time.monotonic() - began
    totals = {
        k: sum(o[k] for o in outcomes)
        for k in ("accepted", "duplicates", "rejected", "retries", "gave_up")
    }
    statuses: dict[int, int] = {}
    for o in outcomes:
        for status, n in o["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    print(
        f"drill: {len(events):,} events ({late:,} late, {repeats:,} repeated) in "
        f"{len(batches)} posts by {SENDERS} senders in {seconds:.1f} s "
        f"({len(events) / seconds:,.0f} events/s); answers {statuses}; {totals}"
    )
    return {"statuses": statuses, "repeats": repeats, **totals}


def stored(database: dict) -> tuple[int, int, int]:
    """(events stored, object states, states that are not their greatest sequencer's)."""
    with psycopg.connect(**database) as conn:
        events = conn.execute("SELECT count(*) FROM replication_copyevent").fetchone()[0]
        states = conn.execute("SELECT count(*) FROM replication_objectstate").fetchone()[0]
        stale = conn.execute(
            """
            SELECT count(*) FROM replication_objectstate s
            WHERE s.sequencer_order <> (
                SELECT max(e.sequencer_order) FROM replication_copyevent e
                WHERE e.pair_id = s.pair_id AND e.key = s.key
            ) OR s.size <> %s
            """,
            [WRITES_PER_OBJECT - 1],
        ).fetchone()[0]
    return events, states, stale


EXACT = (OBJECTS * WRITES_PER_OBJECT, OBJECTS, 0)


def test_ingest_under_load_stores_each_event_once_and_keeps_the_newest_state(
    drill_database, gunicorn
):
    _, database, key_id, secret = drill_database
    result = drive_load(gunicorn, key_id, secret)
    assert 500 not in result["statuses"]
    assert result["gave_up"] == 0
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (
        OBJECTS * WRITES_PER_OBJECT,
        result["repeats"],
        0,
    )
    assert stored(database) == EXACT


# --- PostgreSQL restarted in the middle of the load -------------------------------------------


def _postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of the drill's own, on a free port: never the shared one."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("needs PostgreSQL's initdb and pg_ctl (/usr/lib/postgresql/*/bin)")
    # Not under pytest's tmp_path: the cluster's owner must be able to reach its folder.
    root = Path(tempfile.mkdtemp(prefix="drill-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        shutil.chown(root, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = root / "data"

    def pg_ctl(*args: str) -> float:
        began = time.monotonic()
        # The server inherits pg_ctl's output: a pipe would keep this call waiting forever.
        subprocess.run(
            [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.monotonic() - began

    subprocess.run(
        [*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    log_file = str(root / "log")
    pg_ctl("-o", options, "-l", log_file, "start")
    admin = {"host": "127.0.0.1", "port": port, "user": "postgres", "dbname": "postgres"}
    try:
        yield admin, pg_ctl, log_file
    finally:
        pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_restarted_mid_load_loses_nothing_and_answers_no_500(private_postgres):
    admin, pg_ctl, log_file = private_postgres
    restarts = []

    def restart_once_a_quarter_is_in(progress):
        deadline = time.monotonic() + 120
        while progress() < OBJECTS * WRITES_PER_OBJECT // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        restarts.append(pg_ctl("-m", "fast", "-l", log_file, "restart"))

    with migrated_database(admin) as (env, database, key_id, secret):
        with running_gunicorn(env) as port:
            result = drive_load(port, key_id, secret, during=restart_once_a_quarter_is_in)
        print(f"drill: PostgreSQL restarted in {restarts[0]:.2f} s")
        assert 500 not in result["statuses"]
        assert result["gave_up"] == 0
        assert result["rejected"] == 0
        # A batch committed just before the restart may have lost its answer: the sender's
        # retry then counts as duplicates. What is stored is exact either way.
        assert stored(database) == EXACT

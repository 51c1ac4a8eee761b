"""Drill: ingest under load. 20,000 events from 8 concurrent senders to gunicorn + PostgreSQL,
10% of them posted twice and 10% out of sequencer order: exactly 20,000 stored, and every
object's state is its greatest sequencer's.

Runs against a database of its own on the PostgreSQL of DATABASE_URL, through real HTTP and a
real gunicorn, as the Lambda reaches the site in production.
"""

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid

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


@pytest.fixture
def drill_database():
    """A fresh, migrated database beside DATABASE_URL's, with one pair and one ingest key."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): the drill loads a real one")
    config = dj_database_url.parse(url)
    name = f"drill_load_{uuid.uuid4().hex[:8]}"
    admin = {
        "host": config["HOST"] or "127.0.0.1",
        "port": config["PORT"] or 5432,
        "user": config["USER"],
        "dbname": "postgres",
    }
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
def gunicorn(drill_database):
    env, *_ = drill_database
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


def test_ingest_under_load_stores_each_event_once_and_keeps_the_newest_state(
    drill_database, gunicorn
):
    _, database, key_id, secret = drill_database
    events, late, repeats = the_events(random.Random(20261128))
    batches = [events[i : i + PER_POST] for i in range(0, len(events), PER_POST)]
    outcomes = [
        {"statuses": {}, "accepted": 0, "duplicates": 0, "rejected": 0, "retries": 0, "gave_up": 0}
        for _ in range(SENDERS)
    ]
    senders = [
        threading.Thread(
            target=send, args=(gunicorn, key_id, secret, batches[n::SENDERS], outcomes[n])
        )
        for n in range(SENDERS)
    ]
    began = time.monotonic()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    seconds = time.monotonic() - began

    total = {k: sum(o[k] for o in outcomes) for k in ("accepted", "duplicates", "rejected")}
    statuses: dict[int, int] = {}
    for o in outcomes:
        for status, n in o["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    print(
        f"drill: {len(events):,} events ({late:,} late, {repeats:,} repeated) in "
        f"{len(batches)} posts by {SENDERS} senders in {seconds:.1f} s "
        f"({len(events) / seconds:,.0f} events/s); answers {statuses}; {total}"
    )
    assert 500 not in statuses
    assert sum(o["gave_up"] for o in outcomes) == 0
    assert total == {"accepted": OBJECTS * WRITES_PER_OBJECT, "duplicates": repeats, "rejected": 0}

    with psycopg.connect(**database) as conn:
        stored = conn.execute("SELECT count(*) FROM replication_copyevent").fetchone()[0]
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
    assert (stored, states, stale) == (OBJECTS * WRITES_PER_OBJECT, OBJECTS, 0)

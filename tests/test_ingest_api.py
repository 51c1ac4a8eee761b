"""POST /api/v1/events: signed reports stored once, in order, and never a 500."""

import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import DatabaseError, close_old_connections, connection, connections, transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replication.ingest import schema, store, views
from replication.ingest.signing import sign
from replication.models import (
    BucketPair,
    CopyEvent,
    CopyStatus,
    CopyTally,
    FreshnessTally,
    HourlyTally,
    IngestKey,
    IngestTally,
    ObjectState,
)
from tests.factories import event_payload, make_ingest_key, make_pair
from tests.postgresql import requires_postgresql
from tests.waiting import PATIENCE, until

URL = "/api/v1/events"


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Keys and pairs cached by an earlier test were rolled back with its transaction."""
    views._keys.clear()
    store._pairs.clear()


def post(client, key, payload, *, timestamp=None, headers=None):
    """POST ``payload`` (an object, or raw bytes) signed with ``key`` as the Lambda does."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = {
        "X-Backup-Key": key.key_id,
        "X-Backup-Timestamp": timestamp,
        "X-Backup-Signature": sign(key.secret, timestamp, raw),
    }
    signed.update(headers or {})
    signed = {name: value for name, value in signed.items() if value is not None}
    return client.post(URL, data=raw, content_type="application/json", headers=signed)


def events(*payloads) -> dict:
    return {"events": list(payloads)}


def state_of(pair, key) -> ObjectState:
    return ObjectState.objects.get(pair=pair, key=key)


# --- Authentication -----------------------------------------------------------------------


def test_signed_batch_is_accepted_and_stored(client, pair, ingest_key):
    payload = event_payload(key="a b/ü+%.txt", sequencer="0055AED6DCD90281E5")
    response = post(client, ingest_key, events(payload))

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    stored = CopyEvent.objects.get()
    assert (stored.pair, stored.key, stored.status) == (pair, "a b/ü+%.txt", CopyStatus.COPIED)
    assert stored.sequencer == "0055AED6DCD90281E5"
    assert stored.lag == timedelta(seconds=2.5)
    assert stored.size == 1024
    assert state_of(pair, "a b/ü+%.txt").status == CopyStatus.COPIED


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-Backup-Key": None}, "missing X-Backup-Key"),
        ({"X-Backup-Key": "bk_0000000000000000"}, "unknown or revoked key"),
        ({"X-Backup-Timestamp": None}, "missing X-Backup-Timestamp"),
        ({"X-Backup-Timestamp": "yesterday"}, "unix seconds"),
        ({"X-Backup-Signature": None}, "missing X-Backup-Signature"),
        ({"X-Backup-Signature": "sha256=" + "0" * 64}, "does not match"),
        ({"X-Backup-Signature": "sha256=ü"}, "does not match"),
        ({"X-Backup-Signature": "md5=abc"}, "does not match"),
    ],
)
def test_request_without_a_valid_signature_is_refused(client, pair, ingest_key, headers, reason):
    response = post(client, ingest_key, events(event_payload()), headers=headers)
    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert not CopyEvent.objects.exists()


def test_body_changed_after_signing_is_refused(client, pair, ingest_key):
    timestamp = str(int(time.time()))
    signed_body = json.dumps(events(event_payload(status="failed"))).encode()
    other_body = json.dumps(events(event_payload(status="copied"))).encode()
    response = client.post(
        URL,
        data=other_body,
        content_type="application/json",
        headers={
            "X-Backup-Key": ingest_key.key_id,
            "X-Backup-Timestamp": timestamp,
            "X-Backup-Signature": sign(ingest_key.secret, timestamp, signed_body),
        },
    )
    assert response.status_code == 401
    assert not CopyEvent.objects.exists()


def test_signature_made_with_another_keys_secret_is_refused(client, pair, ingest_key):
    other = make_ingest_key()
    impostor = IngestKey(key_id=ingest_key.key_id, secret=other.secret)
    assert post(client, impostor, events(event_payload())).status_code == 401


def test_revoked_key_is_refused(client, pair, ingest_key):
    ingest_key.revoke()
    response = post(client, ingest_key, events(event_payload()))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


# The server's clock, frozen on a whole second: a clock that ticks between the test reading it
# and the view reading it would let a second of skew decide a test on the 300 s boundary.
SERVER_CLOCK = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("skew", [-301, 301, -(10**9)])
def test_timestamp_far_from_the_server_clock_is_refused(client, pair, ingest_key, skew):
    with time_machine.travel(SERVER_CLOCK, tick=False):
        timestamp = int(SERVER_CLOCK.timestamp()) + skew
        response = post(client, ingest_key, events(event_payload()), timestamp=timestamp)
    assert response.status_code == 401
    assert "300 s" in response.json()["error"]


@pytest.mark.parametrize("skew", [-300, 300, -290, 290])
def test_timestamp_within_the_allowed_skew_is_accepted(client, pair, ingest_key, skew):
    with time_machine.travel(SERVER_CLOCK, tick=False):
        timestamp = int(SERVER_CLOCK.timestamp()) + skew
        response = post(client, ingest_key, events(event_payload()), timestamp=timestamp)
    assert response.status_code == 202


def test_key_last_use_is_written_at_most_once_a_minute(client, pair, ingest_key):
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        assert post(client, ingest_key, events()).status_code == 202
    ingest_key.refresh_from_db()
    assert ingest_key.last_used_at == start

    with time_machine.travel(start + timedelta(seconds=59), tick=False):
        post(client, ingest_key, events())
    ingest_key.refresh_from_db()
    assert ingest_key.last_used_at == start

    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        post(client, ingest_key, events())
    ingest_key.refresh_from_db()
    assert ingest_key.last_used_at == start + timedelta(seconds=61)


# --- Method, size and bad input ------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_methods_other_than_post_are_not_allowed(client, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_body_over_one_mebibyte_is_refused_before_authentication(client, pair, ingest_key):
    padding = "x" * (1024 * 1024)
    response = post(client, ingest_key, {"events": [], "padding": padding})
    assert response.status_code == 413
    assert "1048576 bytes" in response.json()["error"]


def test_body_of_exactly_one_mebibyte_is_accepted(client, pair, ingest_key):
    skeleton = json.dumps({"events": [], "padding": ""})
    padding = "x" * (1024 * 1024 - len(skeleton))
    raw = json.dumps({"events": [], "padding": padding}).encode()
    assert len(raw) == 1024 * 1024
    assert post(client, ingest_key, raw).status_code == 202


def test_more_than_1000_events_is_refused_and_nothing_stored(client, pair, ingest_key):
    payloads = [event_payload(key=f"k{i}", error_message=None, etag=None) for i in range(1001)]
    response = post(client, ingest_key, events(*payloads))
    assert response.status_code == 413
    assert "at most 1000" in response.json()["error"]
    assert not CopyEvent.objects.exists()


def test_batch_of_1000_events_is_stored_whole(client, pair, ingest_key):
    payloads = [event_payload(key=f"bulk/{i}", sequencer=f"{i:04X}") for i in range(1000)]
    response = post(client, ingest_key, events(*payloads))
    assert response.json() == {"accepted": 1000, "duplicates": 0, "rejected": []}
    assert ObjectState.objects.filter(pair=pair).count() == 1000
    assert CopyEvent.objects.get(key="bulk/999").sequencer == "03E7"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\xc3\x28 not utf-8", "body"),
        (b"[1, 2]", "body"),
        (b'"just a string"', "body"),
        (b"{not json", "body"),
        (b'{"events": [' + b"1" * 5000 + b"]}", "body"),
        (b'{"events": [{"size": 1e999}]}', "events[0].source_bucket"),
    ],
)
def test_invalid_body_is_a_400_naming_the_field(client, pair, ingest_key, raw, field):
    response = post(client, ingest_key, raw)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"].startswith(field)


def test_one_bad_event_refuses_the_whole_batch(client, pair, ingest_key):
    batch = events(event_payload(), event_payload(), event_payload(size=2**64))
    response = post(client, ingest_key, batch)
    assert response.status_code == 400
    assert response.json()["field"] == "events[2].size"
    assert not CopyEvent.objects.exists()
    assert not ObjectState.objects.exists()


def test_copy_statuses_of_the_api_are_those_the_database_stores():
    assert set(schema.STATUSES) == set(CopyStatus.values)


# --- Pairs -----------------------------------------------------------------------------------


def test_event_for_an_unregistered_pair_is_rejected_and_the_rest_stored(client, pair, ingest_key):
    batch = events(
        event_payload(key="kept"),
        event_payload(source_bucket="someone-else", key="stray"),
        event_payload(destination_bucket="other-backup", key="elsewhere"),
    )
    response = post(client, ingest_key, batch)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert "s3://someone-else/stray" in body["rejected"][0]["reason"]
    assert list(CopyEvent.objects.values_list("key", flat=True)) == ["kept"]


def test_a_key_limited_to_some_pairs_has_events_for_other_pairs_rejected(client, pair):
    other = make_pair(source_bucket="other-src", backup_bucket="other-bak")
    scoped = make_ingest_key(name="photos-only")
    scoped.pairs.add(pair)
    batch = events(
        event_payload(key="mine.jpg"),
        event_payload(source_bucket="other-src", destination_bucket="other-bak", key="theirs"),
    )
    body = post(client, scoped, batch).json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1]
    assert "may not report" in body["rejected"][0]["reason"]
    assert not CopyEvent.objects.filter(pair=other).exists()


def test_a_key_with_no_pairs_named_reports_for_every_pair(client, pair, ingest_key):
    make_pair(source_bucket="other-src", backup_bucket="other-bak")
    batch = events(
        event_payload(key="mine.jpg"),
        event_payload(source_bucket="other-src", destination_bucket="other-bak", key="theirs"),
    )
    assert post(client, ingest_key, batch).json()["accepted"] == 2


def test_narrowing_a_keys_scope_applies_to_its_next_post(client, pair, ingest_key):
    assert post(client, ingest_key, events(event_payload(key="a"))).json()["accepted"] == 1
    ingest_key.pairs.add(make_pair(source_bucket="other-src", backup_bucket="other-bak"))
    body = post(client, ingest_key, events(event_payload(key="b"))).json()
    assert (body["accepted"], len(body["rejected"])) == (0, 1)


def test_longest_matching_source_prefix_picks_the_pair(client, ingest_key):
    whole = make_pair(source_bucket="media", backup_bucket="media-bak")
    raw = make_pair(
        source_bucket="media", source_prefix="raw/", backup_bucket="media-bak", backup_prefix="r/"
    )
    make_pair(source_bucket="media", source_prefix="raw/", backup_bucket="media-other")
    batch = events(
        event_payload(source_bucket="media", destination_bucket="media-bak", key="raw/1.cr2"),
        event_payload(source_bucket="media", destination_bucket="media-bak", key="rawer/2.cr2"),
    )
    assert post(client, ingest_key, batch).json()["accepted"] == 2
    assert CopyEvent.objects.get(key="raw/1.cr2").pair == raw
    assert CopyEvent.objects.get(key="rawer/2.cr2").pair == whole


def test_key_outside_every_pairs_prefix_is_rejected(client, ingest_key):
    make_pair(source_bucket="media", source_prefix="raw/", backup_bucket="media-bak")
    batch = events(event_payload(source_bucket="media", destination_bucket="media-bak", key="x"))
    assert post(client, ingest_key, batch).json()["rejected"][0]["index"] == 0


def test_results_for_a_disabled_pair_are_still_stored(client, ingest_key):
    make_pair(source_bucket="paused", backup_bucket="paused-bak", enabled=False)
    batch = events(event_payload(source_bucket="paused", destination_bucket="paused-bak"))
    assert post(client, ingest_key, batch).json()["accepted"] == 1


def test_pair_registered_after_the_pairs_were_cached_gets_its_first_event(client, pair, ingest_key):
    assert post(client, ingest_key, events(event_payload())).json()["accepted"] == 1
    # Registered by another process: no signal reaches this one's cache.
    BucketPair.objects.bulk_create(
        [BucketPair(name="new", source_bucket="new-src", backup_bucket="new-bak")]
    )
    batch = events(event_payload(source_bucket="new-src", destination_bucket="new-bak"))
    assert post(client, ingest_key, batch).json()["accepted"] == 1


@pytest.mark.django_db(transaction=True)
def test_pair_deleted_by_another_process_answers_503_then_rejects_on_retry(pair, ingest_key):
    client = Client()
    assert post(client, ingest_key, events(event_payload())).json()["accepted"] == 1
    # Deleted elsewhere (no signal here), while this process still holds it.
    CopyEvent.objects.all().delete()
    ObjectState.objects.all().delete()
    CopyTally.objects.all().delete()
    HourlyTally.objects.all().delete()
    FreshnessTally.objects.all().delete()
    BucketPair.objects.filter(pk=pair.pk)._raw_delete(using="default")

    first = post(client, ingest_key, events(event_payload()))
    assert first.status_code == 503
    retry = post(client, ingest_key, events(event_payload()))
    assert retry.status_code == 202
    assert retry.json()["accepted"] == 0
    assert len(retry.json()["rejected"]) == 1


def test_key_revoked_by_another_process_is_refused_once_the_cache_expires(
    client, pair, ingest_key, monkeypatch
):
    clock = [0.0]
    monkeypatch.setattr(views._keys, "clock", lambda: clock[0])
    assert post(client, ingest_key, events()).status_code == 202
    IngestKey.objects.filter(pk=ingest_key.pk).update(revoked_at=datetime.now(UTC))  # no signal

    clock[0] += views.KEY_CACHE_SECONDS
    assert post(client, ingest_key, events()).status_code == 401


# --- Idempotence -----------------------------------------------------------------------------


def test_repeated_post_is_stored_once(client, pair, ingest_key):
    batch = events(event_payload(), event_payload())
    assert post(client, ingest_key, batch).json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [],
    }
    assert post(client, ingest_key, batch).json() == {
        "accepted": 0,
        "duplicates": 2,
        "rejected": [],
    }
    assert CopyEvent.objects.count() == 2


def test_duplicate_within_one_batch_is_stored_once(client, pair, ingest_key):
    payload = event_payload()
    response = post(client, ingest_key, events(payload, payload))
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": []}


def test_sequencers_equal_after_padding_are_the_same_event(client, pair, ingest_key):
    post(client, ingest_key, events(event_payload(key="k", sequencer="00AB")))
    response = post(client, ingest_key, events(event_payload(key="k", sequencer="00ab00")))
    assert response.json()["duplicates"] == 1


def test_each_attempt_and_each_outcome_is_its_own_result(client, pair, ingest_key):
    first = event_payload(key="k", sequencer="00AB", status="failed", error_code="SlowDown")
    retry = {**first, "attempt": 2, "status": "copied"}
    assert post(client, ingest_key, events(first, retry)).json()["accepted"] == 2


def _post_concurrently(bodies: list[dict], key) -> list[dict]:
    barrier = threading.Barrier(len(bodies))
    answers: list[dict] = []

    def send(body):
        try:
            barrier.wait()
            answers.append(post(Client(), key, body).json())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@requires_postgresql("SQLite lets one writer in at a time, so two posts cannot race")
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_identical_posts_racing_are_stored_once(pair, ingest_key):
    for round_ in range(5):
        batch = events(*[event_payload(key=f"r{round_}/{i}") for i in range(100)])
        answers = _post_concurrently([batch] * 4, ingest_key)
        assert sum(a["accepted"] for a in answers) == 100
        assert sum(a["duplicates"] for a in answers) == 300
    assert CopyEvent.objects.count() == 500
    assert ObjectState.objects.count() == 500


@requires_postgresql("SQLite serialises writers")
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_results_for_one_object_leave_the_newest_as_its_state(pair, ingest_key):
    for round_ in range(5):
        key = f"contended-{round_}"
        bodies = [
            events(event_payload(key=key, sequencer=f"00{n:02X}", status=status))
            for n, status in enumerate(["copied", "failed", "copied", "deleted"])
        ]
        _post_concurrently(bodies, ingest_key)
        state = state_of(pair, key)
        assert (state.sequencer, state.status) == ("0003", CopyStatus.DELETED)


# --- Order -----------------------------------------------------------------------------------


def test_delete_arriving_before_its_older_put_leaves_the_object_deleted(client, pair, ingest_key):
    put = event_payload(key="k", sequencer="0055AED6DCD90281E5", event_name="ObjectCreated:Put")
    delete = event_payload(
        key="k",
        sequencer="0055AED6DCD90281E6",
        event_name="ObjectRemoved:Delete",
        status="deleted",
        size=None,
        etag=None,
    )
    post(client, ingest_key, events(delete))
    post(client, ingest_key, events(put))
    state = state_of(pair, "k")
    assert (state.status, state.event_name) == (CopyStatus.DELETED, "ObjectRemoved:Delete")


def test_failure_fixed_by_a_later_retry_is_no_longer_open(client, pair, ingest_key):
    failed = event_payload(
        key="k",
        sequencer="00AB",
        status="failed",
        error_code="SlowDown",
        error_message="Please reduce your request rate.",
    )
    post(client, ingest_key, events(failed))
    assert ObjectState.objects.filter(pair=pair, status=CopyStatus.FAILED).count() == 1

    post(client, ingest_key, events({**failed, "attempt": 2, "status": "copied"}))
    state = state_of(pair, "k")
    assert (state.status, state.attempt) == (CopyStatus.COPIED, 2)
    assert not ObjectState.objects.filter(pair=pair, status=CopyStatus.FAILED).exists()


def test_failed_attempt_arriving_after_its_successful_retry_changes_nothing(
    client, pair, ingest_key
):
    failed = event_payload(key="k", sequencer="00AB", status="failed", error_code="SlowDown")
    post(client, ingest_key, events({**failed, "attempt": 2, "status": "copied"}))
    post(client, ingest_key, events(failed))
    assert state_of(pair, "k").status == CopyStatus.COPIED


def test_a_redelivered_event_that_succeeds_later_resolves_a_failure_with_a_higher_attempt(
    client, pair, ingest_key
):
    # The Lambda's queue gave up after three attempts; S3 delivered the event again, and the
    # new delivery (attempt 1 again) copied it two minutes later.
    failed = event_payload(
        key="k",
        sequencer="00AB",
        status="failed",
        error_code="SlowDown",
        attempt=3,
        finished_at="2026-11-27T12:00:02.500Z",
    )
    redelivered = {
        **failed,
        "status": "copied",
        "error_code": None,
        "attempt": 1,
        "finished_at": "2026-11-27T12:02:02.500Z",
    }
    for first, second in ((failed, redelivered), (redelivered, failed)):
        ObjectState.objects.filter(pair=pair).delete()
        post(client, ingest_key, events(first))
        post(client, ingest_key, events(second))
        assert state_of(pair, "k").status == CopyStatus.COPIED
        assert not ObjectState.objects.open_failures().exists()


def test_shorter_sequencer_is_compared_right_padded(client, pair, ingest_key):
    # "0A" pads to "0A0...", greater than "09F...": the short one is the newer event.
    newer = event_payload(key="k", sequencer="0A", status="deleted", size=None)
    older = event_payload(key="k", sequencer="09F", status="copied")
    post(client, ingest_key, events(newer))
    post(client, ingest_key, events(older))
    assert state_of(pair, "k").sequencer == "0A"


@pytest.mark.parametrize("together", [False, True], ids=["one-per-post", "one-batch"])
def test_every_arrival_order_leaves_the_greatest_sequencer_as_state(
    client, pair, ingest_key, together
):
    results = [
        ("0055AED6DCD9028", "copied"),
        ("0055AED6DCD90281E5", "failed"),
        ("0055AED6DCD90281E6", "deleted"),
        ("0055AED6DCD90281", "skipped"),
    ]
    for n, arrival in enumerate(itertools.permutations(results)):
        key = f"perm-{n}"
        payloads = [event_payload(key=key, sequencer=s, status=st_) for s, st_ in arrival]
        if together:
            post(client, ingest_key, events(*payloads))
        else:
            for payload in payloads:
                post(client, ingest_key, events(payload))
        state = state_of(pair, key)
        assert (state.sequencer, state.status) == ("0055AED6DCD90281E6", "deleted"), arrival


def test_open_failures_are_the_objects_whose_state_is_failed(client, pair, ingest_key):
    post(
        client,
        ingest_key,
        events(
            event_payload(key="still-broken", sequencer="01", status="failed"),
            event_payload(key="fixed", sequencer="01", status="failed"),
            event_payload(key="fixed", sequencer="02", status="copied"),
            event_payload(key="fine", sequencer="01", status="copied"),
        ),
    )
    open_failures = ObjectState.objects.filter(pair=pair, status=CopyStatus.FAILED)
    assert list(open_failures.values_list("key", flat=True)) == ["still-broken"]


# --- Database failure ------------------------------------------------------------------------


def test_database_error_rolls_back_the_batch_and_asks_for_a_retry(
    client, pair, ingest_key, monkeypatch
):
    # A real database error, raised after the events were inserted in the same transaction.
    monkeypatch.setattr(store, "_STATE_UPSERT", "ON CONFLICT (no_such_column) DO NOTHING")
    response = post(client, ingest_key, events(event_payload(), event_payload()))

    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert not CopyEvent.objects.exists()
    assert not ObjectState.objects.exists()

    monkeypatch.undo()
    retried = post(client, ingest_key, events(event_payload(), event_payload()))
    assert retried.json()["accepted"] == 2


# --- One prepared statement per connection --------------------------------------------------


def _ingest_statements_prepared() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["WITH new\\_events AS%"],
        )
        return cursor.fetchone()[0]


@requires_postgresql("SQLite prepares nothing")
@pytest.mark.postgres
def test_a_connection_prepares_the_batch_statement_once_for_all_its_posts(client, pair, ingest_key):
    for n in range(3):
        response = post(client, ingest_key, events(event_payload(key=f"k{n}")))
        assert response.json()["accepted"] == 1

    assert _ingest_statements_prepared() == 1
    assert CopyEvent.objects.count() == 3


def _forget_ingest_statement_by_name() -> None:
    # Unseen by psycopg, which only notices DEALLOCATE ALL and DISCARD ALL go by.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE %s",
            ["WITH new\\_events AS%"],
        )
        (name,) = cursor.fetchone()
        cursor.execute(f"DEALLOCATE {connection.ops.quote_name(name)}")


def _forget_all_statements() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a connection pooler's reset would


@requires_postgresql("SQLite prepares nothing")
@pytest.mark.postgres
@pytest.mark.parametrize("forget", [_forget_all_statements, _forget_ingest_statement_by_name])
@pytest.mark.django_db(transaction=True)  # as served: each post its own transaction
def test_a_prepared_statement_the_server_forgot_is_prepared_again_and_the_post_stored(
    client, pair, ingest_key, forget
):
    assert post(client, ingest_key, events(event_payload(key="before"))).status_code == 202
    forget()

    response = post(client, ingest_key, events(event_payload(key="after")))

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert state_of(pair, "after").status == CopyStatus.COPIED
    assert _ingest_statements_prepared() == 1


@requires_postgresql("the statement it breaks is PostgreSQL's single batch statement")
@pytest.mark.postgres
def test_a_batch_that_fails_inside_a_callers_transaction_leaves_that_transaction_usable(
    pair, monkeypatch
):
    monkeypatch.setattr(store, "_STATE_UPSERT", "ON CONFLICT (no_such_column) DO NOTHING")
    batch = schema.parse_batch(json.dumps(events(event_payload())).encode(), max_events=10)

    with transaction.atomic():
        with pytest.raises(DatabaseError):
            store.store_batch(batch, received_at=datetime.now(UTC))
        # Without the batch's own savepoint this query would meet an aborted transaction.
        assert BucketPair.objects.filter(pk=pair.pk).exists()
    assert not CopyEvent.objects.exists()


def test_a_post_spends_no_round_trip_on_checking_the_connection(
    client, pair, ingest_key, monkeypatch
):
    checks = []
    database = connections["default"]
    monkeypatch.setattr(database, "is_usable", lambda: checks.append("SELECT 1") or True)
    database.health_check_done = False  # as Django leaves it when each request starts

    response = post(client, ingest_key, events(event_payload()))

    assert response.status_code == 202
    assert checks == []


@requires_postgresql(
    "SQLite is a file opened in-process, whose connection no server restart can cut"
)
@pytest.mark.django_db(transaction=True)
def test_a_connection_that_died_answers_503_and_is_replaced_for_the_next_post(pair, ingest_key):
    client = Client()
    assert post(client, ingest_key, events(event_payload(key="before"))).status_code == 202
    connections["default"].connection.close()  # as a database restart leaves it

    failed = post(client, ingest_key, events(event_payload(key="after")))
    assert failed.status_code == 503
    close_old_connections()  # what Django does when a request ends (the test client does not)
    retried = post(client, ingest_key, events(event_payload(key="after")))

    assert retried.status_code == 202
    assert retried.json()["accepted"] == 1
    assert CopyEvent.objects.filter(key="after").count() == 1


# --- Posts made at once share a statement (group commit) ----------------------------------


class HeldStatements:
    """Records the events of each ingest statement and holds the first until released, as a
    slow statement would: the posts made meanwhile queue for the next one."""

    def __init__(self, monkeypatch):
        self.events: list[int] = []
        self.first_may_run = threading.Event()
        insert = store._insert_batch

        def held(rows, counts):
            self.events.append(len(rows))
            if len(self.events) == 1:
                assert self.first_may_run.wait(PATIENCE)
            return insert(rows, counts)

        monkeypatch.setattr(store, "_insert_batch", held)

    def release(self):
        self.first_may_run.set()


class Sender(threading.Thread):
    """One post on a thread (and database connection) of its own, as gunicorn's threads."""

    def __init__(self, key, body):
        super().__init__(daemon=True)
        self.key, self.body, self.response = key, body, None

    def run(self):
        try:
            self.response = post(Client(), self.key, self.body)
        finally:
            connections.close_all()

    def answer(self) -> tuple[int, dict]:
        self.join(PATIENCE)
        assert not self.is_alive()
        return self.response.status_code, self.response.json()


def _post_while_the_first_is_held(held: HeldStatements, key, *bodies) -> list[Sender]:
    """The first body's statement is held; the others are posted meanwhile, in this order."""
    senders = [Sender(key, body) for body in bodies]
    senders[0].start()
    until(lambda: held.events)
    for n, sender in enumerate(senders[1:], start=1):
        sender.start()
        until(lambda n=n: store._groups.queued == n)
    return senders


def _requests_counted(code: str) -> int:
    return sum(
        IngestTally.objects.filter(counter="requests", label=code).values_list("count", flat=True)
    )


def _grouped(test):
    """A group-commit test: real threads and connections, so real transactions, on
    PostgreSQL."""
    test = pytest.mark.django_db(transaction=True)(test)
    test = pytest.mark.postgres(test)
    why = "posts are grouped on PostgreSQL only; SQLite takes one writer at a time"
    return requires_postgresql(why)(test)


@_grouped
def test_posts_made_while_a_statement_runs_are_stored_together_each_told_its_own_counts(
    pair, ingest_key, monkeypatch
):
    held = HeldStatements(monkeypatch)
    senders = _post_while_the_first_is_held(
        held,
        ingest_key,
        events(event_payload(key="a")),
        events(event_payload(key="b"), event_payload(key="c")),
        events(event_payload(key="d")),
        events(event_payload(key="e")),
    )

    held.release()

    assert [s.answer() for s in senders] == [
        (202, {"accepted": 1, "duplicates": 0, "rejected": []}),
        (202, {"accepted": 2, "duplicates": 0, "rejected": []}),
        (202, {"accepted": 1, "duplicates": 0, "rejected": []}),
        (202, {"accepted": 1, "duplicates": 0, "rejected": []}),
    ]
    assert held.events == [1, 4]  # the first post, then the three made meanwhile together
    assert sorted(CopyEvent.objects.values_list("key", flat=True)) == ["a", "b", "c", "d", "e"]
    assert ObjectState.objects.count() == 5
    assert _requests_counted("202") == 4


@_grouped
def test_an_event_in_two_posts_of_one_statement_is_stored_once_and_new_for_the_first(
    pair, ingest_key, monkeypatch
):
    held = HeldStatements(monkeypatch)
    shared = event_payload(key="shared")
    senders = _post_while_the_first_is_held(
        held,
        ingest_key,
        events(event_payload(key="first")),
        events(shared),
        events(shared, event_payload(key="other")),
    )

    held.release()

    assert [s.answer() for s in senders] == [
        (202, {"accepted": 1, "duplicates": 0, "rejected": []}),
        (202, {"accepted": 1, "duplicates": 0, "rejected": []}),
        (202, {"accepted": 1, "duplicates": 1, "rejected": []}),
    ]
    assert held.events == [1, 3]
    assert CopyEvent.objects.filter(key="shared").count() == 1
    assert sum(CopyTally.objects.values_list("copies", flat=True)) == 3


@_grouped
def test_a_post_that_fails_its_statement_fails_alone_and_the_rest_of_it_is_stored(
    pair, ingest_key, monkeypatch
):
    doomed = make_pair(name="doomed", source_bucket="doomed-src", backup_bucket="doomed-bak")
    assert post(Client(), ingest_key, events(event_payload(key="earlier"))).status_code == 202
    # Deleted by another process (no signal here) while this one still holds it.
    BucketPair.objects.filter(pk=doomed.pk)._raw_delete(using="default")
    for_doomed = event_payload(source_bucket="doomed-src", destination_bucket="doomed-bak")
    held = HeldStatements(monkeypatch)
    senders = _post_while_the_first_is_held(
        held,
        ingest_key,
        events(event_payload(key="first")),
        events(event_payload(key="b")),
        events(for_doomed),
        events(event_payload(key="d")),
    )

    held.release()

    answers = [s.answer() for s in senders]
    assert [status for status, _ in answers] == [202, 202, 503, 202]
    assert [body.get("accepted") for _, body in answers] == [1, 1, None, 1]
    assert held.events[:2] == [1, 3]  # then each of the three alone
    assert sorted(CopyEvent.objects.values_list("key", flat=True)) == ["b", "d", "earlier", "first"]
    assert (_requests_counted("202"), _requests_counted("503")) == (4, 1)


@_grouped
def test_a_post_of_many_events_is_stored_alone_without_waiting_for_a_statement(
    pair, ingest_key, monkeypatch
):
    held = HeldStatements(monkeypatch)
    (first,) = _post_while_the_first_is_held(held, ingest_key, events(event_payload()))
    too_many = store.GROUP_MAX_EVENTS + 1
    big = Sender(ingest_key, events(*[event_payload() for _ in range(too_many)]))
    big.start()

    assert big.answer() == (202, {"accepted": too_many, "duplicates": 0, "rejected": []})
    assert first.is_alive()  # its statement is still held
    held.release()
    assert first.answer()[0] == 202
    assert held.events == [1, too_many]


# --- Never a 500 -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _field(valid):
    """A valid value most of the time, anything at all otherwise."""
    return st.one_of(st.just(valid), st.just(valid), json_values)


_valid = event_payload(key="k", sequencer="0055AED6DCD90281E5")
event_like = st.fixed_dictionaries({name: _field(value) for name, value in _valid.items()})
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"events": json_values}),
    st.fixed_dictionaries({"events": st.lists(event_like, max_size=4)}),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_any_signed_json_is_answered_without_a_server_error(client, pair, ingest_key, body):
    # The test client re-raises any exception a view lets escape, so a 500 fails here too.
    response = post(client, ingest_key, json.dumps(body).encode())
    assert response.status_code in (202, 400, 413), response.content


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_any_signed_bytes_are_answered_without_a_server_error(client, pair, ingest_key, raw):
    assert post(client, ingest_key, raw).status_code in (202, 400)

"""The destructive-change guard: counted at ingest, tripped by rule, released and paused."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from replication.ingest import views
from replication.ingest.signing import sign
from replication.models import GuardAudit, GuardHold, GuardTally, ReconcileRun
from replication.protection import counting, guard, guard_rules
from replication.protection.health import health_findings
from replication.protection.tasks import evaluate_guards
from tests.factories import make_ingest_key, make_pair, record_events

SSE_C_ERROR = (
    "The object was stored using a form of Server Side Encryption. The correct parameters "
    "must be provided to retrieve the object."
)

# --- rules (pure)


def test_the_threshold_is_the_larger_of_the_minimum_and_the_factor_times_the_usual():
    assert guard_rules.threshold(500, 10, 12) == 500
    assert guard_rules.threshold(500, 10, 80) == 800


def test_more_changes_than_the_threshold_trip_with_a_reason_in_words():
    trip = guard_rules.decide(4812, 0, min_changes=500, factor=10, usual=12)
    assert trip.reason == (
        "4,812 deletes and overwrites in 5 min, usually at most 12 (the guard trips above 500)"
    )
    assert guard_rules.decide(500, 0, min_changes=500, factor=10, usual=12) is None


def test_one_copy_refused_for_sse_c_trips_whatever_the_counts():
    trip = guard_rules.decide(0, 1, min_changes=500, factor=10, usual=0)
    assert (
        "1 copy refused: the source object is encrypted with a key S3 does not hold" in trip.reason
    )


def test_the_usual_is_the_99th_percentile_of_five_minute_counts_zeros_included():
    assert guard_rules.usual([], 4032) == 0
    assert guard_rules.usual([5] * 40, 4032) == 0  # 40 busy buckets of 4,032: under 1%
    assert guard_rules.usual([5] * 41, 4032) == 5
    assert guard_rules.usual(range(1, 101), 100) == 99


def test_minutes_sum_into_five_minute_buckets():
    t = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    counts = guard_rules.five_minute_counts(
        [(t, 1), (t + timedelta(minutes=4), 2), (t + timedelta(minutes=5), 3)]
    )
    assert counts == {t: 3, t + timedelta(minutes=5): 3}


@pytest.mark.parametrize(
    ("event_name", "status", "etag", "old_status", "old_etag", "destructive"),
    [
        ("ObjectRemoved:Delete", "deleted", "", "copied", '"a"', True),
        ("ObjectRemoved:Delete", "skipped", "", "", "", True),
        ("ObjectCreated:Put", "copied", '"b"', "copied", '"a"', True),  # an overwrite
        ("ObjectCreated:Put", "copied", '"a"', "copied", '"a"', False),  # the same content
        ("ObjectCreated:Put", "copied", '"b"', "", "", False),  # a new key
        ("ObjectCreated:Put", "copied", '"b"', "failed", '"a"', False),  # backup never had it
        ("ObjectCreated:Put", "failed", '"b"', "copied", '"a"', False),  # not applied
    ],
)
def test_what_counts_as_destructive(event_name, status, etag, old_status, old_etag, destructive):
    assert counting.is_destructive(event_name, status, etag, old_status, old_etag) is destructive


def test_only_s3s_sse_c_refusal_counts_as_an_encrypted_refusal():
    assert counting.is_encrypted_refusal("failed", "InvalidRequest", SSE_C_ERROR)
    assert not counting.is_encrypted_refusal("failed", "InvalidRequest", "Bad range")
    assert not counting.is_encrypted_refusal("failed", "AccessDenied", SSE_C_ERROR)


# --- counting at ingest (SQLite here, PostgreSQL in CI: the same assertions)


def tally(pair) -> tuple[int, int]:
    row = GuardTally.objects.filter(pair=pair).aggregate(
        c=Sum("changes"), r=Sum("encrypted_refusals")
    )
    return row["c"] or 0, row["r"] or 0


def fresh(**fields) -> dict:
    now = timezone.now()
    return {
        "event_time": now - timedelta(seconds=2),
        "started_at": now - timedelta(seconds=1),
        "finished_at": now,
        **fields,
    }


def test_ingest_counts_deletes_and_overwrites_not_new_keys_or_recopies(pair):
    record_events(
        pair, fresh(key="a", etag='"1"', sequencer="01"), fresh(key="b", etag='"1"', sequencer="01")
    )
    assert tally(pair) == (0, 0)
    record_events(
        pair,
        fresh(key="a", etag='"2"', sequencer="02"),  # overwrite
        fresh(key="b", etag='"1"', sequencer="02"),  # same content again
        fresh(
            key="c", event_name="ObjectRemoved:Delete", status="deleted", etag="", sequencer="03"
        ),
    )
    assert tally(pair) == (2, 0)


def test_a_repeated_event_is_counted_once(pair):
    delete = fresh(
        key="a", event_name="ObjectRemoved:Delete", status="deleted", etag="", sequencer="09"
    )
    record_events(pair, delete)
    record_events(pair, delete)
    assert tally(pair) == (1, 0)


def test_events_that_finished_long_before_they_arrive_are_not_counted(pair):
    old = timezone.now() - timedelta(minutes=6)
    record_events(
        pair,
        {
            "key": "a",
            "event_name": "ObjectRemoved:Delete",
            "status": "deleted",
            "etag": "",
            "event_time": old,
            "started_at": old,
            "finished_at": old,
        },
    )
    assert tally(pair) == (0, 0)


def test_an_sse_c_refusal_is_counted(pair):
    record_events(
        pair,
        fresh(key="x", status="failed", error_code="InvalidRequest", error_message=SSE_C_ERROR),
    )
    assert tally(pair) == (0, 1)


# --- tripping, within a minute


def deletes(pair, n: int) -> None:
    record_events(
        pair,
        *(
            fresh(
                key=f"{pair.source_prefix}k{i}",
                event_name="ObjectRemoved:Delete",
                status="deleted",
                etag="",
                sequencer=f"{i:06X}",
            )
            for i in range(n)
        ),
    )


def test_a_burst_over_the_threshold_trips_once_and_is_audited(db):
    pair = make_pair(guard_min_changes=50, guard_factor=10, guard_usual=2)
    deletes(pair, 51)
    assert evaluate_guards() == 1
    assert evaluate_guards() == 0  # still held: not tripped again
    hold = GuardHold.objects.get(pair=pair)
    assert hold.is_open and hold.changes == 51 and hold.threshold == 50
    assert hold.reason.startswith("51 deletes and overwrites in 5 min, usually at most 2")
    assert GuardAudit.objects.get(pair=pair).action == "tripped"


def test_a_burst_within_the_threshold_or_a_paused_guard_does_not_trip(db):
    quiet = make_pair(guard_min_changes=50)
    paused = make_pair(guard_min_changes=50)
    deletes(quiet, 50)
    deletes(paused, 80)
    guard.pause(paused, None, hours=2)
    assert evaluate_guards() == 0
    assert GuardAudit.objects.get(pair=paused).note.startswith("paused for 2 h, until ")


def test_a_disabled_pair_does_not_trip(db):
    pair = make_pair(guard_min_changes=1, enabled=False)
    deletes(pair, 5)
    assert evaluate_guards() == 0


def test_counts_older_than_five_minutes_do_not_trip(db):
    pair = make_pair(guard_min_changes=10)
    deletes(pair, 20)
    assert guard.evaluate(timezone.now() + timedelta(minutes=6)) == []


def test_the_usual_is_recomputed_from_fourteen_days(db):
    pair = make_pair()
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    GuardTally.objects.bulk_create(
        GuardTally(pair=pair, minute=now - timedelta(minutes=5 * i), changes=30)
        for i in range(1, 60)
    )
    GuardTally.objects.create(pair=pair, minute=now - timedelta(days=15), changes=10_000)
    assert guard.recompute_usual(now) == 1
    pair.refresh_from_db()
    assert pair.guard_usual == 30


def test_a_hold_makes_the_pair_critical_with_its_reason(db):
    pair = make_pair(guard_min_changes=5)
    deletes(pair, 6)
    evaluate_guards()
    (severity, reason), *_ = health_findings([pair], timezone.now())[pair.pk]
    assert severity == "critical"
    assert "destructive-change guard holds since" in reason
    assert "6 deletes and overwrites in 5 min" in reason


# --- release and pause


def test_releasing_with_keep_clears_the_hold_and_is_audited(db, admin_user):
    pair = make_pair(guard_min_changes=5)
    deletes(pair, 6)
    evaluate_guards()
    hold = guard.release(pair, admin_user, "keep")
    assert hold.release == "keep" and hold.released_by == admin_user
    assert not GuardHold.objects.filter(released_at__isnull=True).exists()
    assert GuardAudit.objects.filter(pair=pair, action="released_keep", by=admin_user).exists()
    assert guard.release(pair, admin_user, "keep") is None  # nothing left to release
    assert health_findings([pair], timezone.now()) == {}


def test_releasing_with_apply_starts_a_reconcile_with_repair(db, admin_user, monkeypatch):
    from replication import tasks

    queued = []
    monkeypatch.setattr(
        tasks.reconcile_pair,
        "apply_async",
        lambda *a, **k: queued.append(k) or type("R", (), {"id": "t"})(),
    )
    pair = make_pair(guard_min_changes=5)
    deletes(pair, 6)
    evaluate_guards()
    guard.release(pair, admin_user, "apply")
    run = ReconcileRun.objects.get(pair=pair)
    assert run.repair and run.requested_by == admin_user
    assert GuardAudit.objects.filter(pair=pair, action="released_apply").exists()


def test_a_pause_outside_1_to_168_hours_is_refused(db):
    pair = make_pair()
    with pytest.raises(ValueError, match="1 to 168 hours"):
        guard.pause(pair, None, hours=0)
    assert not GuardAudit.objects.exists()


# --- GET /api/v1/guard and /api/v1/pairs/<name>/guard, signed like ingest


def signed_get(client, key, url: str, *, secret: str | None = None):
    timestamp = int(time.time())
    headers = {
        "X-Backup-Key": key.key_id,
        "X-Backup-Timestamp": str(timestamp),
        "X-Backup-Signature": sign(secret or key.secret, timestamp, b""),
    }
    return client.get(url, headers=headers)


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    views._keys.clear()


def test_the_guard_lists_the_holds_of_the_keys_pairs(client, db):
    held = make_pair(name="held", source_prefix="raw/", guard_min_changes=1)
    other = make_pair(name="other", guard_min_changes=1)
    deletes(held, 2)
    deletes(other, 2)
    evaluate_guards()
    key = make_ingest_key()
    key.pairs.add(held)
    response = signed_get(client, key, "/api/v1/guard")
    assert response.status_code == 200
    (hold,) = response.json()["holds"]
    assert hold["pair"] == "held"
    assert hold["source"] == f"{held.source_bucket}/raw/"
    assert hold["backup"] == f"{held.backup_bucket}/"
    assert hold["reason"].startswith("2 deletes and overwrites in 5 min")
    assert datetime.fromisoformat(hold["since"])


def test_a_key_for_every_pair_sees_every_hold_and_none_when_released(client, db, admin_user):
    pair = make_pair(guard_min_changes=1)
    deletes(pair, 2)
    evaluate_guards()
    key = make_ingest_key()
    assert len(signed_get(client, key, "/api/v1/guard").json()["holds"]) == 1
    guard.release(pair, admin_user, "keep")
    assert signed_get(client, key, "/api/v1/guard").json() == {"holds": []}


def test_one_pairs_guard(client, db):
    pair = make_pair(name="photos-one", guard_min_changes=1)
    key = make_ingest_key()
    assert signed_get(client, key, "/api/v1/pairs/photos-one/guard").json() == {
        "pair": "photos-one",
        "hold": False,
        "since": None,
        "reason": "",
    }
    deletes(pair, 2)
    evaluate_guards()
    answer = signed_get(client, key, "/api/v1/pairs/photos-one/guard").json()
    assert answer["hold"] is True and answer["reason"]


def test_the_guard_refuses_a_bad_signature_an_unknown_pair_and_a_pair_out_of_scope(client, db):
    pair = make_pair(name="mine")
    make_pair(name="theirs")
    key = make_ingest_key()
    key.pairs.add(pair)
    assert signed_get(client, key, "/api/v1/guard", secret="wrong").status_code == 401
    assert client.get("/api/v1/guard").status_code == 401
    assert signed_get(client, key, "/api/v1/pairs/theirs/guard").status_code == 404
    assert signed_get(client, key, "/api/v1/pairs/nope/guard").status_code == 404
    assert client.post("/api/v1/guard").status_code == 405

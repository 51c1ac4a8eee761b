"""A restore into the source meets the guard: its own writes (key and ETag), copied back
into the backup by the Lambda, are neither counted toward the guard nor held by it; the same
keys with other content are."""

import json
import time
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from replication import lambda_function
from replication.ingest import store, views
from replication.ingest.signing import sign
from replication.models import GuardHold, GuardTally, RestoredObject, RestoreJob
from replication.protection.tasks import evaluate_guards
from replication.restore import job as restores
from replication.restore import writes
from tests.factories import make_ingest_key, make_pair
from tests.lambda_support import BACKUP, SOURCE, invoke, s3_event, s3_record
from tests.restore_support import at, moments, versioned

GOOD = "9d5ed678fe57bcca610140957afab571"  # the ETag of the content a restore brings back
BAD = "6f1ed002ab5595859014ebf0951522d9"  # the ETag of the damage
KMS = "e4b6d0a1f3c2b5a7d9e8f1c0b3a2d5e6"  # the ETag a source that encrypts with KMS gave it


@pytest.fixture(autouse=True)
def _fresh_caches():
    views._keys.clear()
    store._pairs.clear()


def a_restore(pair, *objects, into_source=True, status=RestoreJob.Status.RUNNING, **fields):
    """A restore job of ``pair`` with an outcome row per (key, etag, outcome)."""
    job = RestoreJob.objects.create(
        pair=pair,
        at=timezone.now() - timedelta(hours=1),
        target_bucket=pair.source_bucket if into_source else "elsewhere",
        into_source=into_source,
        status=status,
        **fields,
    )
    for key, etag, outcome, *written in objects:
        RestoredObject.objects.create(
            job=job,
            key=key,
            version_id="v1",
            size=3,
            etag=etag,
            target_key=key,
            outcome=outcome,
            written_etag=written[0] if written else "",
        )
    return job


def changes(pair) -> int:
    return GuardTally.objects.filter(pair=pair).aggregate(n=Sum("changes"))["n"] or 0


def signed_post(client, key, url: str, payload) -> object:
    raw = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-Backup-Key": key.key_id,
        "X-Backup-Timestamp": timestamp,
        "X-Backup-Signature": sign(key.secret, timestamp, raw),
    }
    return client.post(url, data=raw, content_type="application/json", headers=headers)


def copied(key: str, etag: str, sequencer: str) -> dict:
    now = timezone.now()
    return {
        "source_bucket": SOURCE,
        "destination_bucket": BACKUP,
        "key": key,
        "event_name": "ObjectCreated:Copy",
        "event_time": (now - timedelta(seconds=2)).isoformat(),
        "sequencer": sequencer,
        "size": 3,
        "etag": etag,
        "status": "copied",
        "started_at": (now - timedelta(seconds=1)).isoformat(),
        "finished_at": now.isoformat(),
    }


def report(client, key, *events) -> None:
    response = signed_post(client, key, "/api/v1/events", {"events": list(events)})
    assert response.status_code == 202 and response.json()["rejected"] == [], response.json()


# --- counting at ingest, through the signed API


def test_a_restores_own_write_copied_back_is_not_counted(client, pair, ingest_key):
    report(client, ingest_key, copied("a.jpg", BAD, "01"), copied("b.jpg", BAD, "01"))
    a_restore(pair, ("a.jpg", GOOD, "restored"), ("b.jpg", GOOD, "pending"))

    report(client, ingest_key, copied("a.jpg", GOOD, "02"), copied("b.jpg", f'"{GOOD}"', "02"))

    assert changes(pair) == 0


@pytest.mark.parametrize("outcome", ["restored", "failed"], ids=["proven", "unproven"])
def test_a_restores_write_into_a_kms_source_is_known_by_the_etag_its_copy_wrote(
    client, pair, ingest_key, outcome
):
    # The copy's ETag is not the version's, so the Lambda reports another ETag; a copy that
    # no checksum proved is failed, yet it wrote the object all the same.
    report(client, ingest_key, copied("a.jpg", BAD, "01"))
    a_restore(pair, ("a.jpg", GOOD, outcome, KMS))

    report(client, ingest_key, copied("a.jpg", KMS, "02"))

    assert changes(pair) == 0
    assert writes.recognise(pair.pk, [("a.jpg", f'"{KMS}"')], timezone.now()) == {("a.jpg", KMS)}


def test_the_same_key_with_other_content_is_counted(client, pair, ingest_key):
    report(client, ingest_key, copied("a.jpg", BAD, "01"))
    a_restore(pair, ("a.jpg", GOOD, "restored"))

    report(client, ingest_key, copied("a.jpg", "0" * 32, "02"))

    assert changes(pair) == 1


@pytest.mark.parametrize(
    "restore",
    [
        {"into_source": False},  # a restore elsewhere writes nothing into the source
        {"outcome": "failed"},  # the copy never happened
        {"created_later": True},  # the restore began after the write
        {"ended_long_ago": True},  # its copies came back within the hour, not now
        {"other_pair": True},
    ],
    ids=["elsewhere", "failed-copy", "not-yet-begun", "long-finished", "another-pair"],
)
def test_an_overwrite_that_no_restore_of_the_pair_wrote_then_is_counted(
    client, pair, ingest_key, restore
):
    report(client, ingest_key, copied("a.jpg", BAD, "01"))
    now = timezone.now()
    owner = make_pair(name="other", source_bucket="other-src") if "other_pair" in restore else pair
    job = a_restore(
        owner,
        ("a.jpg", GOOD, restore.get("outcome", "restored")),
        into_source=restore.get("into_source", True),
        status=RestoreJob.Status.SUCCEEDED,
        finished_at=now - writes.LATE_COPIES - timedelta(minutes=1)
        if "ended_long_ago" in restore
        else None,
    )
    if "created_later" in restore:
        RestoreJob.objects.filter(pk=job.pk).update(created_at=now + timedelta(minutes=1))

    report(client, ingest_key, copied("a.jpg", GOOD, "02"))

    assert changes(pair) == 1


def test_a_restore_write_within_a_burst_leaves_the_rest_counted(client, pair, ingest_key):
    report(client, ingest_key, *(copied(f"k{n}", BAD, "01") for n in range(4)))
    a_restore(pair, ("k0", GOOD, "restored"))

    report(client, ingest_key, *(copied(f"k{n}", GOOD, "02") for n in range(4)))

    assert changes(pair) == 3


# --- the guard's API: the holds say "restoring"; the Lambda asks which writes are the restore's


def test_a_hold_says_restoring_while_a_restore_into_the_source_may_see_copies_back(
    client, pair, ingest_key
):
    GuardHold.objects.create(
        pair=pair, since=timezone.now(), reason="r", changes=600, usual=1, threshold=500
    )
    from tests.test_guard import signed_get

    assert signed_get(client, ingest_key, "/api/v1/guard").json()["holds"][0]["restoring"] is False
    a_restore(pair, ("a.jpg", GOOD, "restored"), into_source=False)
    assert signed_get(client, ingest_key, "/api/v1/guard").json()["holds"][0]["restoring"] is False
    job = a_restore(pair, ("a.jpg", GOOD, "restored"))
    assert signed_get(client, ingest_key, "/api/v1/guard").json()["holds"][0]["restoring"] is True
    RestoreJob.objects.filter(pk=job.pk).update(
        status="succeeded", finished_at=timezone.now() - timedelta(hours=2)
    )
    assert signed_get(client, ingest_key, "/api/v1/guard").json()["holds"][0]["restoring"] is False


def test_the_restored_lookup_names_exactly_the_restores_writes(client, pair, ingest_key):
    a_restore(
        pair,
        ("a.jpg", GOOD, "restored"),
        ("b.jpg", GOOD, "failed"),
        ("d.jpg", GOOD, "restored", KMS),
    )
    asked = [
        {"key": "a.jpg", "etag": GOOD},
        {"key": "a.jpg", "etag": BAD},
        {"key": "b.jpg", "etag": GOOD},
        {"key": "c.jpg", "etag": GOOD},
        {"key": "d.jpg", "etag": KMS},
        {"key": "d.jpg", "etag": BAD},
    ]
    response = signed_post(client, ingest_key, "/api/v1/pairs/photos/restored", {"objects": asked})
    assert response.status_code == 200
    restored = response.json()["restored"]
    assert sorted(restored, key=lambda o: o["key"]) == [
        {"key": "a.jpg", "etag": GOOD},
        {"key": "d.jpg", "etag": KMS},
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "body: not JSON"),
        (b"[]", 'body: an object with a list "objects" expected'),
        (b'{"objects": [{"key": "a"}]}', "objects[0]: a non-empty key and etag expected"),
        (b'{"objects": [{"key": "a\\u0000", "etag": "e"}]}', "objects[0]: key and etag must"),
        (b'{"objects": [{"key": "\\ud800", "etag": "e"}]}', "objects[0]: key and etag must"),
        (("[" * 100_000).encode(), "body: not JSON"),
    ],
    ids=["not-json", "no-objects", "no-etag", "nul", "surrogate", "deep"],
)
def test_the_restored_lookup_refuses_bad_input_with_a_clear_error(
    client, pair, ingest_key, body, message
):
    timestamp = str(int(time.time()))
    headers = {
        "X-Backup-Key": ingest_key.key_id,
        "X-Backup-Timestamp": timestamp,
        "X-Backup-Signature": sign(ingest_key.secret, timestamp, body),
    }
    url = "/api/v1/pairs/photos/restored"
    response = client.post(url, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_the_restored_lookup_is_signed_and_scoped(client, pair, ingest_key):
    theirs = make_pair(name="theirs", source_bucket="their-src")
    mine = make_ingest_key(name="scoped")
    mine.pairs.add(pair)
    payload = {"objects": [{"key": "a", "etag": "e"}]}
    assert signed_post(client, mine, "/api/v1/pairs/photos/restored", payload).status_code == 200
    assert (
        signed_post(client, mine, f"/api/v1/pairs/{theirs.name}/restored", payload).status_code
        == 404
    )
    assert signed_post(client, mine, "/api/v1/pairs/nope/restored", payload).status_code == 404
    unsigned = client.post(
        "/api/v1/pairs/photos/restored", data=b"{}", content_type="application/json"
    )
    assert unsigned.status_code == 401
    assert client.get("/api/v1/pairs/photos/restored").status_code == 405


# --- through the real Lambda handler: a restore into the source while the guard holds


def lambda_env(live_server, ingest_key) -> dict:
    return {
        "DESTINATION_BUCKET": BACKUP,
        "REPORT_URL": f"{live_server.url}/api/v1/events",
        "REPORT_KEY_ID": ingest_key.key_id,
        "REPORT_SECRET": ingest_key.secret,
    }


def test_a_restore_into_the_source_is_copied_back_while_held_and_never_counted(
    transactional_db, live_server, pair, ingest_key, s3, monkeypatch
):
    versioned(s3, SOURCE, BACKUP)
    keys = ["doc/0.pdf", "doc/1.pdf", "doc/2.pdf"]
    t = moments(2)
    with at(t[0]):
        for key in keys:
            s3.put_object(Bucket=BACKUP, Key=key, Body=b"precious")
    # The damage reached the backup before the guard tripped (and is known to the site).
    for key in keys:
        s3.put_object(Bucket=SOURCE, Key=key, Body=b"garbage")
        s3.put_object(Bucket=BACKUP, Key=key, Body=b"garbage")
    bad = s3.head_object(Bucket=BACKUP, Key=keys[0])["ETag"].strip('"')
    env = lambda_env(live_server, ingest_key)
    invoke(monkeypatch, s3, s3_event(*(s3_record(k, etag=bad) for k in keys)), **env)
    counted = changes(pair)

    request = restores.make_request(pair, at=t[0] + timedelta(minutes=1), into_source=True)
    job = restores.create_job(request, restores.count_plan(s3, request))
    assert restores.run_job(job.pk, s3=s3, threads=2).status == "succeeded"
    # The guard trips again meanwhile (the attack goes on elsewhere): the pair holds.
    GuardHold.objects.create(
        pair=pair, since=timezone.now(), reason="again", changes=600, usual=1, threshold=500
    )
    lambda_function._holds = None  # the 15 s cache, run out
    records = []
    for key in keys:
        head = s3.head_object(Bucket=SOURCE, Key=key)
        records.append(
            s3_record(
                key,
                event_name="ObjectCreated:Copy",
                etag=head["ETag"],
                version_id=head["VersionId"],
                size=head["ContentLength"],
            )
        )

    result = invoke(monkeypatch, s3, s3_event(*records), **env)

    assert (result["copied"], result["held"], result["failed"]) == (3, 0, 0)
    for key in keys:
        assert s3.get_object(Bucket=BACKUP, Key=key)["Body"].read() == b"precious"
    assert changes(pair) == counted  # the copies back are not overwrites to the guard

    # The same key with other content is a change like any other: held.
    again = s3.put_object(Bucket=SOURCE, Key=keys[0], Body=b"garbage again")
    lambda_function._holds = None
    result = invoke(monkeypatch, s3, s3_event(s3_record(keys[0], etag=again["ETag"])), **env)
    assert result["held"] == 1
    assert s3.get_object(Bucket=BACKUP, Key=keys[0])["Body"].read() == b"precious"


def test_without_a_restoring_hold_the_lambda_asks_nothing_more(s3):
    calls = []
    cfg = lambda_function.load_config(
        {
            "DESTINATION_BUCKET": BACKUP,
            "REPORT_URL": "https://b.example/api/v1/events",
            "REPORT_KEY_ID": "k",
            "REPORT_SECRET": "s",
        }
    )
    held = lambda_function.Holds(frozenset({(f"{SOURCE}/", f"{BACKUP}/")}))
    event = lambda_function.parse_event(s3_event(s3_record("a.jpg", etag=GOOD))).records
    assert lambda_function.restore_writes(cfg, held, event, urlopen=calls.append) == frozenset()
    assert calls == []


def test_when_the_restore_lookup_fails_the_write_is_held_and_the_failure_said(s3, caplog):
    def refused(request, timeout):
        raise OSError("connection refused")

    cfg = lambda_function.load_config(
        {
            "DESTINATION_BUCKET": BACKUP,
            "REPORT_URL": "https://b.example/api/v1/events",
            "REPORT_KEY_ID": "k",
            "REPORT_SECRET": "s",
        }
    )
    restoring = lambda_function.Holds(
        frozenset({(f"{SOURCE}/", f"{BACKUP}/")}),
        restoring=frozenset({(f"{SOURCE}/", f"{BACKUP}/", "photos")}),
    )
    event = lambda_function.parse_event(s3_event(s3_record("a.jpg", etag=GOOD))).records
    assert lambda_function.restore_writes(cfg, restoring, event, urlopen=refused) == frozenset()
    assert "restore lookup failed: its writes are held as any change" in caplog.text
    assert lambda_function._lookup_failures == 1


def test_evaluate_ignores_a_restore_copied_back(client, pair, ingest_key):
    pair.guard_min_changes = 2
    pair.save()
    report(client, ingest_key, *(copied(f"k{n}", BAD, "01") for n in range(5)))
    a_restore(pair, *((f"k{n}", GOOD, "restored") for n in range(5)))
    report(client, ingest_key, *(copied(f"k{n}", GOOD, "02") for n in range(5)))
    assert evaluate_guards() == 0

"""The Lambda while a pair's guard holds: deletes and overwrites of objects the backup has
are reported held, new keys still copied; the holds are read at most every 15 s."""

import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from replication import lambda_function
from replication.lambda_function import Holds, current_holds, default_guard_url, load_config
from replication.models import CopyEvent, GuardHold, ObjectState, ReconcileRun
from replication.protection import guard
from replication.protection.tasks import evaluate_guards
from tests.factories import record_events
from tests.lambda_support import BACKUP, SOURCE, backup_keys, invoke, put_event, s3_event, s3_record
from tests.reconcile_support import an_hour_ago, reconcile_now

HELD_PAIR = frozenset({(f"{SOURCE}/", f"{BACKUP}/")})


def config(**env):
    return load_config({"DESTINATION_BUCKET": BACKUP, **env})


def delete_record(key: str) -> dict:
    return s3_record(key, event_name="ObjectRemoved:Delete")


def test_the_guard_url_follows_the_report_url():
    assert default_guard_url("https://b.example/api/v1/events") == "https://b.example/api/v1/guard"
    assert default_guard_url("https://b.example/hook") == ""
    env = {
        "REPORT_URL": "https://b.example/api/v1/events",
        "REPORT_KEY_ID": "k",
        "REPORT_SECRET": "s",
    }
    assert config(**env).guard_url == "https://b.example/api/v1/guard"
    assert config(**env, GUARD_URL="https://g.example/guard").guard_url == "https://g.example/guard"
    assert config().guard_url == ""  # no site to ask


def test_while_held_a_mirrored_delete_of_a_backed_up_key_is_held(s3):
    s3.put_object(Bucket=BACKUP, Key="a.jpg", Body=b"kept")
    cfg = config(MIRROR_DELETES="true")
    event = lambda_function.parse_event(s3_event(delete_record("a.jpg"))).records[0]
    _, outcome = lambda_function.process_record(s3, cfg, event, holds=Holds(HELD_PAIR))
    assert outcome.status == "held"
    assert backup_keys(s3) == ["a.jpg"]


def test_while_held_an_overwrite_is_held_and_a_new_key_is_copied(s3):
    s3.put_object(Bucket=BACKUP, Key="old.jpg", Body=b"good")
    records = [
        *put_event(s3, "old.jpg", b"garbage")["Records"],
        *put_event(s3, "new.jpg", b"new")["Records"],
    ]
    cfg = config()
    outcomes = [
        lambda_function.process_record(s3, cfg, event, holds=Holds(HELD_PAIR))[1].status
        for event in lambda_function.parse_event(s3_event(*records)).records
    ]
    assert outcomes == ["held", "copied"]
    assert s3.get_object(Bucket=BACKUP, Key="old.jpg")["Body"].read() == b"good"


def test_a_pair_not_held_applies_changes_and_looks_at_nothing(s3):
    calls = []
    s3.meta.events.register("before-call.s3.HeadObject", lambda **kw: calls.append(kw))
    s3.put_object(Bucket=BACKUP, Key="old.jpg", Body=b"good")
    cfg = config()
    other = Holds(frozenset({("elsewhere/", f"{BACKUP}/")}))
    (event,) = lambda_function.parse_event(put_event(s3, "old.jpg", b"new")).records
    calls.clear()
    assert lambda_function.process_record(s3, cfg, event, holds=other)[1].status == "copied"
    assert not [c for c in calls if c["params"].get("Bucket") == BACKUP]


def test_a_delete_the_pair_would_not_mirror_is_not_held(s3):
    s3.put_object(Bucket=BACKUP, Key="a.jpg", Body=b"x")
    event = lambda_function.parse_event(s3_event(delete_record("a.jpg"))).records[0]
    _, outcome = lambda_function.process_record(s3, config(), event, holds=Holds(HELD_PAIR))
    assert outcome.status == "skipped"


class FakeSite:
    def __init__(self, holds=(), fail=False):
        self.calls, self.holds, self.fail = [], list(holds), fail

    def __call__(self, request, timeout):
        self.calls.append(request)
        if self.fail:
            raise OSError("connection refused")
        body = json.dumps({"holds": [{"source": s, "backup": b} for s, b in self.holds]})
        return io.BytesIO(body.encode())


def site_config():
    return config(
        REPORT_URL="https://b.example/api/v1/events", REPORT_KEY_ID="k", REPORT_SECRET="s"
    )


def test_the_holds_are_read_at_most_once_per_15_seconds_signed_over_an_empty_body():
    site = FakeSite(HELD_PAIR)
    now = [100.0]
    for _ in range(3):
        holds = current_holds(site_config(), clock=lambda: now[0], urlopen=site)
    assert len(site.calls) == 1 and holds.holds(f"{SOURCE}/", f"{BACKUP}/")
    request = site.calls[0]
    assert request.full_url == "https://b.example/api/v1/guard" and request.get_method() == "GET"
    timestamp = request.get_header("X-backup-timestamp")
    assert request.get_header("X-backup-signature") == lambda_function.sign("s", timestamp, b"")
    now[0] += 15
    current_holds(site_config(), clock=lambda: now[0], urlopen=site)
    assert len(site.calls) == 2


def test_when_the_site_cannot_answer_changes_are_applied_and_the_log_says_so(caplog):
    holds = current_holds(site_config(), clock=lambda: 0.0, urlopen=FakeSite(fail=True))
    assert holds.lookup_failed and not holds.pairs
    assert "guard lookup failed: applying changes without it" in caplog.text


# --- the drill: a mass delete trips the guard, the Lambda holds, a person releases


@pytest.fixture
def mirroring(pair):
    pair.mirror_deletes = True
    pair.guard_usual = 10
    pair.save()
    return pair


def lambda_env(live_server, ingest_key) -> dict:
    return {
        "DESTINATION_BUCKET": BACKUP,
        "MIRROR_DELETES": "true",
        "REPORT_URL": f"{live_server.url}/api/v1/events",
        "REPORT_KEY_ID": ingest_key.key_id,
        "REPORT_SECRET": ingest_key.secret,
    }


def a_burst_of_deletes(pair, n: int) -> None:
    """``n`` deletes reported within the last minute, as a wrong ``--recursive`` makes them."""
    now = timezone.now()
    record_events(
        pair,
        *(
            {
                "key": f"burst/{i:04d}",
                "event_name": "ObjectRemoved:Delete",
                "status": "deleted",
                "etag": "",
                "sequencer": f"{i + 1:06X}",
                "event_time": now - timedelta(seconds=30),
                "started_at": now - timedelta(seconds=20),
                "finished_at": now - timedelta(seconds=10),
            }
            for i in range(n)
        ),
    )


def test_drill_a_mass_delete_is_held_then_applied_on_release(
    transactional_db, live_server, mirroring, ingest_key, s3, monkeypatch, admin_user
):
    a_burst_of_deletes(mirroring, 2000)
    assert evaluate_guards() == 1  # 2,000 > max(500, 10 x 10), within the minute
    for n in range(5):
        s3.put_object(Bucket=BACKUP, Key=f"doc/{n}.pdf", Body=b"precious")
    # The source keeps one object: a repair never deletes extras beside an empty source
    # listing (a wrong bucket or prefix lists nothing).
    s3.put_object(Bucket=SOURCE, Key="still.pdf", Body=b"here")
    s3.put_object(Bucket=BACKUP, Key="still.pdf", Body=b"here")
    event = s3_event(*(delete_record(f"doc/{n}.pdf") for n in range(5)))

    result = invoke(monkeypatch, s3, event, **lambda_env(live_server, ingest_key))

    assert result["held"] == 5 and result["failed"] == 0 and result["deleted"] == 0
    assert backup_keys(s3) == [*(f"doc/{n}.pdf" for n in range(5)), "still.pdf"]
    assert CopyEvent.objects.filter(pair=mirroring, status="held").count() == 5
    assert ObjectState.objects.filter(pair=mirroring, key="doc/0.pdf").get().status == "held"

    guard.release(mirroring, admin_user, "apply")
    run = ReconcileRun.objects.get(pair=mirroring)
    assert run.repair and run.status == "succeeded", run.error
    assert backup_keys(s3) == ["still.pdf"]  # the source's state: the deletes applied
    assert not GuardHold.objects.filter(released_at__isnull=True).exists()

    # Released: the next deletes are applied at once (after the 15 s cache, here reset).
    lambda_function._holds = None
    s3.put_object(Bucket=BACKUP, Key="late.pdf", Body=b"x")
    result = invoke(
        monkeypatch, s3, s3_event(delete_record("late.pdf")), **lambda_env(live_server, ingest_key)
    )
    assert result["deleted"] == 1 and result["held"] == 0


def test_drill_a_mass_delete_is_held_then_kept_on_release(
    transactional_db, live_server, mirroring, ingest_key, s3, monkeypatch, admin_user, client
):
    a_burst_of_deletes(mirroring, 2000)
    assert evaluate_guards() == 1
    with an_hour_ago():
        for n in range(5):
            s3.put_object(Bucket=BACKUP, Key=f"doc/{n}.pdf", Body=b"precious")
        s3.put_object(Bucket=SOURCE, Key="still.pdf", Body=b"here")
        s3.put_object(Bucket=BACKUP, Key="still.pdf", Body=b"here")
    event = s3_event(*(delete_record(f"doc/{n}.pdf") for n in range(5)))
    result = invoke(monkeypatch, s3, event, **lambda_env(live_server, ingest_key))
    assert result["held"] == 5

    guard.release(mirroring, admin_user, "keep")

    kept = ObjectState.objects.filter(pair=mirroring, finding="kept")
    assert sorted(kept.values_list("key", flat=True)) == [f"doc/{n}.pdf" for n in range(5)]
    assert not ObjectState.objects.filter(pair=mirroring).lacking().exists()
    assert not ReconcileRun.objects.filter(pair=mirroring).exists()  # keep starts no repair
    run = reconcile_now(mirroring)
    assert (run.verdict, run.kept, run.extra) == ("in_sync", 5, 0)
    assert backup_keys(s3) == [*(f"doc/{n}.pdf" for n in range(5)), "still.pdf"]
    client.force_login(admin_user)
    page = client.get(f"/pairs/{mirroring.name}/").content.decode()
    assert "5 kept</strong>" in page and "released: keep the backup as it is" in page


SSE_C_MESSAGE = (
    "The object was stored using a form of Server Side Encryption. The correct parameters "
    "must be provided to retrieve the object."
)


def test_a_copy_refused_for_sse_c_trips_the_guard(
    transactional_db, live_server, pair, ingest_key, s3, monkeypatch
):
    # moto ignores SSE-C: S3's refusal, as S3 returns it, stubbed at the handler's client.
    from botocore.stub import ANY, Stubber

    client = lambda_function.make_s3_client()
    monkeypatch.setattr(lambda_function, "_client", client)
    stub = Stubber(client)
    stub.add_client_error(
        "copy_object",
        service_error_code="InvalidRequest",
        service_message=SSE_C_MESSAGE,
        http_status_code=400,
        expected_params={
            "Bucket": BACKUP,
            "Key": "ledger.xlsx",
            "CopySource": ANY,
            "CopySourceIfMatch": ANY,
            "MetadataDirective": ANY,
            "TaggingDirective": ANY,
        },
    )
    record = s3_record("ledger.xlsx", etag='"0cc175b9c0f1b6a831c399e269772661"', size=10)
    env = {
        "DESTINATION_BUCKET": BACKUP,
        "REPORT_URL": f"{live_server.url}/api/v1/events",
        "REPORT_KEY_ID": ingest_key.key_id,
        "REPORT_SECRET": ingest_key.secret,
    }
    with stub, pytest.raises(lambda_function.ReplicationFailed):
        invoke(monkeypatch, client, s3_event(record), **env)
    stored = CopyEvent.objects.get(pair=pair, key="ledger.xlsx")
    assert (stored.status, stored.error_code) == ("failed", "InvalidRequest")
    assert evaluate_guards() == 1
    hold = GuardHold.objects.get(pair=pair)
    assert hold.encrypted_refusals == 1
    assert "encrypted with a key S3 does not hold (SSE-C)" in hold.reason


def test_a_failed_lookup_is_said_in_the_next_report_and_counted_in_metrics(
    transactional_db, live_server, pair, ingest_key, s3, monkeypatch, client
):
    env = {
        "DESTINATION_BUCKET": BACKUP,
        "REPORT_URL": f"{live_server.url}/api/v1/events",
        "REPORT_KEY_ID": ingest_key.key_id,
        "REPORT_SECRET": ingest_key.secret,
        "GUARD_URL": "http://127.0.0.1:9/api/v1/guard",  # nothing listens there
    }
    result = invoke(monkeypatch, s3, put_event(s3, "a.jpg"), **env)
    assert result["copied"] == 1  # applied without the guard
    assert lambda_function._lookup_failures == 0  # said in that report
    text = client.get("/metrics").content.decode()
    assert "backupsite_guard_lookup_failures_total 1.0" in text


def test_report_bodies_carry_the_extra_fields_once():
    entries = [{"key": str(n)} for n in range(3)]
    (body,) = lambda_function.report_bodies(entries, {"guard_lookup_failures": 2})
    assert json.loads(body) == {"events": entries, "guard_lookup_failures": 2}
    (alone,) = lambda_function.report_bodies([], {"guard_lookup_failures": 1})
    assert json.loads(alone) == {"events": [], "guard_lookup_failures": 1}
    assert list(lambda_function.report_bodies([])) == []

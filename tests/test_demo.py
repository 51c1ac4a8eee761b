"""The demo (`make demo`) and the one local S3 that every process of a local setup shares."""

import html
import itertools
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from django.core.management import call_command

from replication import lambda_function
from replication import s3 as s3_clients
from replication.demo import scenario, seed
from replication.models import (
    BucketPair,
    CopyEvent,
    DrillObject,
    ObjectState,
    ProtectionResult,
    ReconcileRun,
    RestoreDrill,
    RestoreJob,
    RestorePoint,
)
from replication.protection import store as protection
from tests.factories import make_pair

# --- the scenario (pure) ----------------------------------------------------------------------


def test_demo_records_decode_to_the_key_as_s3_names_it():
    key = "originals/albums/été/holiday 00001+edit.jpg"
    record = scenario.s3_record(
        "demo-photos-src",
        key,
        etag='"abc"',
        size=3,
        sequencer="00AA",
        event_time=datetime(2026, 11, 28, 12, tzinfo=UTC),
    )
    (event,) = lambda_function.parse_event({"Records": [record]}).records
    assert (event.key, event.etag, event.event_time) == (key, "abc", "2026-11-28T12:00:00.000Z")


def test_sequencers_grow_and_keep_one_width():
    sequencer = scenario.Sequencers(start=0xFF)
    first, second = sequencer(), sequencer()
    assert first < second
    assert len(first) == len(second) == 20


def test_the_three_demo_pairs_hold_a_few_thousand_objects_with_distinct_keys():
    keys = [key for plan in scenario.PAIRS for key in scenario.object_keys(plan)]
    assert len(scenario.PAIRS) == 3
    assert 2000 <= len(keys) < 5000
    assert len(set(keys)) == len(keys)


def test_an_objects_body_depends_only_on_its_key_and_version():
    assert scenario.body_for("a") == scenario.body_for("a")
    assert scenario.body_for("a") != scenario.body_for("a", version=2)


# --- one local S3 -----------------------------------------------------------------------------


def test_a_process_uses_the_local_s3_already_running_on_the_known_port(local_s3, caplog):
    s3_clients.client().create_bucket(Bucket="shared-bucket")
    other_process = boto3.client(
        "s3",
        endpoint_url=local_s3,
        aws_access_key_id=s3_clients.LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=s3_clients.LOCAL_SECRET_ACCESS_KEY,
        region_name="us-east-1",
    )
    assert [b["Name"] for b in other_process.list_buckets()["Buckets"]] == ["shared-bucket"]
    assert "started an empty one" not in caplog.text


def test_a_process_that_finds_no_local_s3_starts_one_on_the_port_and_says_so(
    settings, monkeypatch, caplog
):
    probe = s3_clients.make_local_s3_server(0)
    port = probe.server_port
    probe.server_close()
    settings.EMBEDDED_S3, settings.EMBEDDED_S3_PORT = True, port
    monkeypatch.setattr(s3_clients, "_embedded_endpoint", None)

    assert s3_clients.endpoint_url() == f"http://127.0.0.1:{port}"
    assert s3_clients.is_listening(port)
    assert f"No local S3 was running at http://127.0.0.1:{port}" in caplog.text


def test_aws_endpoint_url_alone_needs_no_credentials_outside_production(local_s3, settings):
    settings.EMBEDDED_S3 = False
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", local_s3)
        env.delenv("AWS_ACCESS_KEY_ID", raising=False)
        env.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        env.setenv("AWS_CONFIG_FILE", "/nonexistent")
        s3_clients.reset_clients()
        assert s3_clients.client().list_buckets()["Buckets"] == []


def test_describe_names_the_s3_a_process_talks_to(settings, monkeypatch):
    settings.EMBEDDED_S3, settings.EMBEDDED_S3_PORT = True, 5055
    assert s3_clients.describe() == "the local S3 (moto) at http://127.0.0.1:5055"
    settings.EMBEDDED_S3 = False
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert (
        s3_clients.describe() == "the S3-compatible server at http://minio:9000 (AWS_ENDPOINT_URL)"
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_PROFILE", "backups")
    assert s3_clients.describe() == "AWS S3 (profile backups, default region us-east-1)"


def test_create_buckets_creates_them_in_the_local_s3_and_says_where(local_s3, capsys):
    call_command("create_buckets", "my-source", "my-backup")
    call_command("create_buckets", "my-source")

    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "Created s3://my-source",
        "Created s3://my-backup",
        "Already there: s3://my-source",
    ]
    assert f"S3: the local S3 (moto) at {local_s3}" in captured.err
    names = {b["Name"] for b in s3_clients.client().list_buckets()["Buckets"]}
    assert names == {"my-backup", "my-source"}


def test_create_buckets_sets_them_up_as_a_protected_pairs(local_s3, db, capsys):
    call_command("create_buckets", "my-source", "my-backup")
    pair = make_pair(source_bucket="my-source", backup_bucket="my-backup")
    checks = protection.run_checks(pair)
    assert {c.id.value: c.state.value for c in checks} == dict.fromkeys(
        [c.id.value for c in checks], "ok"
    )


def test_create_buckets_can_leave_versioning_off(local_s3, db, capsys):
    call_command("create_buckets", "my-source", "my-backup", "--unversioned")
    pair = make_pair(source_bucket="my-source", backup_bucket="my-backup")
    found = {c.id.value: c.state.value for c in protection.run_checks(pair)}
    assert found["backup_versioning"] == "warning"
    assert found["backup_public_access"] == found["source_trigger"] == "ok"


# --- seeding through the real handler and ingest API ---------------------------------------

SMALL = scenario.PairPlan(
    name="demo-small",
    source_bucket="demo-small-src",
    backup_bucket="demo-small-bak",
    objects=12,
    grace_seconds=0,
    denied=("secret.txt",),
    throttled=4,
    unannounced=2,
    late_and_out_of_order=True,
)


def test_seeding_reports_copies_failures_and_finds_the_unannounced_objects_missing(
    transactional_db, live_server, local_s3
):
    key, password = seed.reset_database([SMALL])
    lines = []
    demo = seed.Demo(f"{live_server.url}/api/v1/events", key, say=lines.append, plans=[SMALL])

    demo.seed()

    pair = BucketPair.objects.get(name="demo-small")
    failed = dict(
        CopyEvent.objects.filter(pair=pair, status="failed").values_list("key", "error_code")
    )
    assert failed["secret.txt"] == "AccessDenied"
    assert sorted(failed.values()).count("SlowDown") == 4
    # Half of the burst was copied when SQS redelivered it: those failures are resolved.
    assert ObjectState.objects.filter(pair=pair, status="failed").count() == 1 + 2
    cover = ObjectState.objects.get(pair=pair, key="2026/edited/cover.jpg")
    assert cover.status == "copied"  # the older event, arriving last, did not win
    late = CopyEvent.objects.get(pair=pair, key="2026/late/delivered-25-minutes-late.jpg")
    assert late.lag >= scenario.LATE_BY
    run = ReconcileRun.objects.get(pair=pair)
    assert run.status == "succeeded"
    assert run.trigger == "scheduled"  # the demo's own run, not a person's
    assert run.missing == 2 + 1 + 2  # unannounced, denied, throttled and never retried
    assert password
    # The demo's buckets are set up as a protected pair's: every check ok.
    assert set(
        ProtectionResult.objects.filter(pair=pair, is_latest=True).values_list("state", flat=True)
    ) == {"ok"}


def test_the_demo_pair_without_backup_versioning_shows_the_warning_and_its_fix(
    transactional_db, live_server, local_s3
):
    plan = replace(
        SMALL,
        throttled=0,
        denied=(),
        unannounced=0,
        late_and_out_of_order=False,
        backup_versioned=False,
    )
    key, _ = seed.reset_database([plan])
    lines = []
    seed.Demo(f"{live_server.url}/api/v1/events", key, say=lines.append, plans=[plan]).seed()
    latest = dict(
        ProtectionResult.objects.filter(pair__name="demo-small", is_latest=True).values_list(
            "check_id", "state"
        )
    )
    assert latest.pop("backup_versioning") == "warning"
    assert set(latest.values()) == {"ok"}
    assert any("backup_versioning warning: versioning is off" in line for line in lines)


def test_exactly_one_demo_pair_leaves_backup_versioning_off():
    assert [p.name for p in scenario.PAIRS if not p.backup_versioned] == ["demo-invoices"]


def test_every_demo_pairs_backup_is_versioned_but_demo_invoices(
    transactional_db, live_server, local_s3
):
    plans = [replace(SMALL, throttled=0, unannounced=0, late_and_out_of_order=False)]
    plans.append(replace(plans[0], name="demo-small-2", backup_bucket="demo-small-2-bak"))
    plans[1] = replace(plans[1], source_bucket="demo-small-2-src", backup_versioned=False)
    key, _ = seed.reset_database(plans)
    seed.Demo(f"{live_server.url}/api/v1/events", key, say=print, plans=plans).seed()

    s3 = s3_clients.client()
    status = {
        plan.name: s3.get_bucket_versioning(Bucket=plan.backup_bucket).get("Status")
        for plan in plans
    }
    assert status == {"demo-small": "Enabled", "demo-small-2": None}


def test_the_demo_overwrite_hits_every_object_under_its_prefix_so_its_restore_brings_back_those():
    (plan,) = [p for p in scenario.PAIRS if p.overwritten]
    keys = scenario.object_keys(plan)
    prefix = plan.source_prefix + plan.overwritten_prefix

    hit = scenario.overwritten_keys(plan, keys, failed=set())

    assert hit == [key for key in keys if key.startswith(prefix)] and len(hit) == 25
    assert plan.overwritten < 500  # under the guard's threshold: it lets the mistake through


OVERWRITTEN = replace(
    SMALL,
    throttled=0,
    denied=(),
    unannounced=0,
    late_and_out_of_order=False,
    key_patterns=("raw/{n:05d}.cr3", "{n:05d}.jpg"),
    overwritten=4,
    overwritten_prefix="raw/",
)


def test_the_overwrite_gone_wrong_reaches_the_backup_and_is_offered_for_restore(
    transactional_db, live_server, local_s3
):
    key, _ = seed.reset_database([OVERWRITTEN])
    lines = []
    seed.Demo(f"{live_server.url}/api/v1/events", key, say=lines.append, plans=[OVERWRITTEN]).seed()

    s3 = s3_clients.client()
    hit = [f"raw/{n:05d}.cr3" for n in (0, 2, 4, 6)]
    for name in hit:  # the backup copied the garbage: its current version is no photo
        body = s3.get_object(Bucket=OVERWRITTEN.backup_bucket, Key=name)["Body"].read()
        assert body == scenario.garbage(len(scenario.body_for(name)), name)
    point = RestorePoint.objects.get(pair__name="demo-small")
    assert point.prefix == "raw/" and point.at.microsecond == 0
    assert point.reason.startswith("4 objects under raw/ were overwritten with garbage")
    assert any("overwrite gone wrong: 4 objects under raw/" in line for line in lines)
    # Under the guard's threshold: nothing held, the pair is not stopped.
    assert not CopyEvent.objects.filter(pair__name="demo-small", status="held").exists()


def test_a_visitor_follows_the_offer_to_a_finished_restore_of_the_photos_before_the_overwrite(
    transactional_db, live_server, local_s3, client
):
    from django.contrib.auth.models import User

    key, _ = seed.reset_database([OVERWRITTEN])
    seed.Demo(f"{live_server.url}/api/v1/events", key, say=print, plans=[OVERWRITTEN]).seed()
    client.force_login(User.objects.get(username=scenario.DEMO_USER))

    panel = html.unescape(client.get("/pairs/demo-small/restore/panel/").content.decode())
    offer = re.search(r'href="(/pairs/demo-small/restore/\?[^"]+)"', panel).group(1)
    form = client.get(offer).content.decode()
    fields = {
        name: html.unescape(re.search(rf'name="{name}" value="([^"]*)"', form).group(1))
        for name in ("at", "prefix", "to")
    }
    plan = client.post("/pairs/demo-small/restore/", {**fields, "step": "plan"})
    assert "Restore 6 objects" in plan.content.decode()  # raw/: every other of the 12
    done = client.post("/pairs/demo-small/restore/", {**fields, "step": "confirm"})

    job = RestoreJob.objects.get()
    assert done["Location"] == f"/restores/{job.pk}/"
    assert (job.status, job.restored, job.failed) == ("succeeded", 6, 0)
    s3 = s3_clients.client()
    for n in range(0, 12, 2):
        name = f"raw/{n:05d}.cr3"
        restored = s3.get_object(
            Bucket=OVERWRITTEN.backup_bucket, Key=f".backupsite/restores/{name}"
        )["Body"].read()
        assert restored == scenario.body_for(name)  # the photo as it was, not the garbage
    panel = client.get("/pairs/demo-small/restore/panel/").content.decode()
    assert "Something to restore" not in panel


def test_seeding_runs_a_restore_drill_of_each_pair_on_the_local_s3(
    transactional_db, live_server, local_s3
):
    from datetime import timedelta

    from django.utils import timezone

    from replication.status.facts import pair_health

    plans = [replace(SMALL, throttled=0, late_and_out_of_order=False)]
    key, _ = seed.reset_database(plans)
    # Registered a month ago, as the demo's history says: a pair never drilled is overdue.
    BucketPair.objects.update(created_at=timezone.now() - timedelta(days=30))
    lines = []
    seed.Demo(f"{live_server.url}/api/v1/events", key, say=lines.append, plans=plans).seed()

    drill = RestoreDrill.objects.get(pair__name="demo-small")
    assert (drill.status, drill.trigger) == ("passed", "scheduled")
    assert drill.sampled == drill.verified == DrillObject.objects.filter(drill=drill).count() > 0
    assert drill.throughput_bytes_s > 0
    listed = s3_clients.client().list_objects_v2(
        Bucket=SMALL.backup_bucket, Prefix=".backupsite/drills/"
    )
    assert listed.get("KeyCount", 0) == 0  # the scratch copies were deleted
    assert any(f"restore drill #{drill.pk} passed" in line for line in lines)
    (health,) = pair_health()
    assert not [r for r in health.health.reasons if "restore drill" in r]


def test_running_the_seed_again_starts_the_demo_pairs_afresh(
    transactional_db, live_server, local_s3
):
    plan = replace(SMALL, throttled=0, denied=(), unannounced=0, late_and_out_of_order=False)
    for _ in range(2):
        key, _ = seed.reset_database([plan])
        seed.Demo(f"{live_server.url}/api/v1/events", key, say=print, plans=[plan]).seed()

    assert CopyEvent.objects.filter(pair__name="demo-small").count() == 12
    assert ReconcileRun.objects.get(pair__name="demo-small").missing == 0


def test_the_demo_writes_its_log_records_to_a_file_not_to_the_terminal(settings, tmp_path, capsys):
    from replication.management.commands.demo import quiet_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    settings.BASE_DIR = tmp_path
    try:
        path = quiet_logging()
        logging.getLogger("backupsite.replicator").error('{"message": "copy failed"}')
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    assert path == tmp_path / "var" / "demo.log"
    assert 'ERROR backupsite.replicator {"message": "copy failed"}' in path.read_text()
    captured = capsys.readouterr()
    assert "copy failed" not in captured.out + captured.err


def test_the_demo_pairs_are_reconciled_by_the_schedule_and_labelled_so(transactional_db, local_s3):
    from replication.demo.scheduler import Scheduler

    seed.reset_database([SMALL])
    for bucket in (SMALL.source_bucket, SMALL.backup_bucket):
        s3_clients.client().create_bucket(Bucket=bucket)
    pair = BucketPair.objects.get(name="demo-small")
    assert pair.reconcile_every_minutes == SMALL.reconcile_every_minutes

    scheduler = Scheduler()
    (due,) = [job for job in scheduler.jobs if job.name == "reconcile-due-pairs"]
    assert scheduler.run(due)

    run = ReconcileRun.objects.get(pair=pair)
    assert (run.trigger, run.status) == ("scheduled", "succeeded")


# --- the Makefile's local targets -------------------------------------------------------------

MAKEFILE = (Path(__file__).resolve().parent.parent / "Makefile").read_text()


def recipe(target: str) -> str:
    """The lines of a Makefile target's recipe."""
    lines = MAKEFILE.split(f"\n{target}:", 1)[1].split("\n")[1:]
    return "\n".join(itertools.takewhile(lambda line: line.startswith("\t"), lines))


def test_make_beat_keeps_its_schedule_file_in_var_which_git_ignores():
    assert "--schedule var/celerybeat-schedule" in recipe("beat")
    ignored = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().split()
    assert "/var/" in ignored


def test_only_make_screenshots_writes_the_readme_screenshots():
    assert "demo --port $(PORT) --screenshots docs/screenshots" in recipe("screenshots")
    assert "docs/screenshots" not in recipe("test")


def test_the_mass_delete_incident_trips_the_guard_and_the_backup_keeps_the_rest(
    transactional_db, live_server, local_s3
):
    from replication.models import GuardHold

    plan = replace(
        SMALL,
        throttled=0,
        denied=(),
        unannounced=0,
        late_and_out_of_order=False,
        mirror_deletes=True,
    )
    key, _ = seed.reset_database([plan])
    BucketPair.objects.filter(name=plan.name).update(guard_min_changes=5)
    lines = []
    demo = seed.Demo(f"{live_server.url}/api/v1/events", key, say=lines.append, plans=[plan])
    demo.seed()

    demo.mass_delete(plan.name, burst=6, further=3)

    hold = GuardHold.objects.get(pair__name=plan.name, released_at__isnull=True)
    assert hold.reason.startswith("6 deletes and overwrites in 5 min")
    assert CopyEvent.objects.filter(pair__name=plan.name, status="held").count() == 3
    assert lines[-1].endswith(
        "3 more deletes: 3 held, 0 applied; the backup still has 3 of them. "
        "Release the guard on the pair page."
    )

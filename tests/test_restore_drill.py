"""Restore drills against moto, their health rule, /metrics series and schedule."""

import json
import random
import socket
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from backupsite.celery import app
from replication import tasks
from replication.models import DrillObject, RestoreDrill
from replication.restore import drill as drills
from replication.restore.status import LastDrill, drill_findings, health_findings
from tests.factories import make_pair
from tests.restore_support import PART, put_in_parts, versioned

SOURCE = "shop-src"
BACKUP = "shop-bak"
SRC_PREFIX = "data/"
BAK_PREFIX = "copy/"


@pytest.fixture
def pair(db, s3):
    versioned(s3, BACKUP)
    return make_pair(
        name="shop",
        source_bucket=SOURCE,
        source_prefix=SRC_PREFIX,
        backup_bucket=BACKUP,
        backup_prefix=BAK_PREFIX,
        drill_max_bytes=6 * 1024 * 1024,
    )


@pytest.fixture
def backed_up(s3, pair):
    """30 small objects, a multipart one under the drill's limit and one over it, in both
    buckets; and one whose source changed since its copy."""
    for n in range(30):
        for bucket, prefix in ((SOURCE, SRC_PREFIX), (BACKUP, BAK_PREFIX)):
            s3.put_object(Bucket=bucket, Key=f"{prefix}obj-{n:02}.txt", Body=f"body {n}".encode())
    for bucket, prefix in ((SOURCE, SRC_PREFIX), (BACKUP, BAK_PREFIX)):
        put_in_parts(s3, bucket, prefix + "fits.bin", [PART, 77], b"fit")
        put_in_parts(s3, bucket, prefix + "too-big.bin", [PART, PART, 5], b"big")
    s3.put_object(Bucket=BACKUP, Key=BAK_PREFIX + "changed.txt", Body=b"old")
    s3.put_object(Bucket=SOURCE, Key=SRC_PREFIX + "changed.txt", Body=b"new")
    return pair


def scratch_versions(s3) -> list:
    listed = s3.list_object_versions(Bucket=BACKUP, Prefix=".backupsite/")
    return listed.get("Versions", []) + listed.get("DeleteMarkers", [])


def drill(pair) -> RestoreDrill:
    started = drills.start_drill(pair)
    return drills.run_drill(started.pk, rng=random.Random(7))


def test_a_drill_restores_its_sample_compares_every_byte_and_leaves_no_scratch(s3, backed_up):
    result = drill(backed_up)

    assert result.status == RestoreDrill.Status.PASSED, result.error
    assert (result.sampled, result.verified) == (21, 21)
    samples = list(result.samples.all())
    assert {s.outcome for s in samples} == {"verified"}
    keys = {s.key for s in samples}
    assert SRC_PREFIX + "fits.bin" in keys
    assert SRC_PREFIX + "too-big.bin" not in keys
    assert SRC_PREFIX + "changed.txt" not in keys
    assert {s.compared_by for s in samples if s.multipart} == {"sha256"}
    assert {s.compared_by for s in samples if not s.multipart} == {"md5"}
    assert result.sampled_bytes == sum(s.size for s in samples)
    assert result.throughput_bytes_s > 0
    assert scratch_versions(s3) == []  # the versions themselves are gone, not hidden


def test_a_drill_whose_restored_bytes_differ_fails(s3, backed_up, monkeypatch):
    real_copy = drills.copy_version

    def copy_then_rot(s3_, bucket, key, version, etag, target_bucket, target_key):
        restored = real_copy(s3_, bucket, key, version, etag, target_bucket, target_key)
        if key.endswith("obj-03.txt"):
            s3_.put_object(Bucket=target_bucket, Key=target_key, Body=b"rotten")
        return restored

    monkeypatch.setattr(drills, "copy_version", copy_then_rot)
    monkeypatch.setattr(django_settings, "DRILL_SAMPLE_SIZE", 40)  # every object

    result = drill(backed_up)

    assert result.status == RestoreDrill.Status.FAILED
    assert result.error == f"1 of {result.sampled} objects differ: '{SRC_PREFIX}obj-03.txt'"
    rotten = result.samples.get(outcome=DrillObject.Outcome.DIFFERS)
    assert rotten.compared_by == "sha256"


def test_a_drill_with_nothing_to_sample_is_an_error(s3, pair):
    result = drill(pair)

    assert result.status == RestoreDrill.Status.ERROR
    assert "nothing to drill" in result.error


def test_a_drill_of_a_missing_backup_bucket_is_an_error_with_the_reason(s3, db):
    pair = make_pair(name="gone", source_bucket=SOURCE, backup_bucket="no-such-bak")

    result = drill(pair)

    assert (result.status, result.error) == ("error", "backup bucket 'no-such-bak' does not exist")


def test_one_drill_at_a_time_per_pair(s3, pair):
    drills.start_drill(pair)

    with pytest.raises(drills.DrillRefused, match="already running"):
        drills.start_drill(pair)


def test_a_drill_left_running_by_a_dead_worker_is_ended_as_error(s3, pair):
    started = drills.start_drill(pair)
    RestoreDrill.objects.filter(pk=started.pk).update(
        started_at=timezone.now() - timedelta(hours=7)
    )

    assert drills.reap_stalled_drills() == [started.pk]
    started.refresh_from_db()
    assert started.status == "error" and "worker stopped" in started.error


def test_drill_command_prints_the_contracts_json(s3, backed_up):
    out = StringIO()
    call_command("drill", "shop", "--json", stdout=out)

    result = json.loads(out.getvalue())
    stored = RestoreDrill.objects.get()
    assert result == {
        "drill": stored.pk,
        "status": "passed",
        "objects": 21,
        "verified": 21,
        "bytes": stored.sampled_bytes,
        "duration_s": stored.duration_s,
        "throughput_bytes_s": stored.throughput_bytes_s,
    }


def test_the_drill_command_records_who_ran_it_and_where(s3, backed_up):
    call_command("drill", "shop", stdout=StringIO())

    stored = RestoreDrill.objects.get()
    assert stored.trigger == "manual" and stored.requested_by is None
    assert stored.requested_by_name.endswith(f"@{socket.gethostname()} (command line)")


def test_drill_command_exits_non_zero_with_one_line_when_the_drill_did_not_pass(s3, pair):
    with pytest.raises(CommandError) as refused:
        call_command("drill", "shop", stdout=StringIO())
    assert str(refused.value).startswith("restore drill error: nothing to drill")
    with pytest.raises(CommandError, match="no pair named 'nope'"):
        call_command("drill", "nope", stdout=StringIO())


def test_beat_starts_the_drills_that_are_due_and_only_those(s3, backed_up):
    off = make_pair(name="off", source_bucket=SOURCE, backup_bucket="x-bak")
    off.restore_drill_every_days = 0
    off.save()

    started = tasks.dispatch_due_drills()  # eager in tests: the drill runs here

    assert RestoreDrill.objects.get(pk__in=started).pair == backed_up
    assert RestoreDrill.objects.get().status == "passed"
    assert tasks.dispatch_due_drills() == []  # not due again for 7 days
    for name in ("restore-drills-due", "reap-stalled-restores"):
        entry = django_settings.CELERY_BEAT_SCHEDULE[name]
        assert entry["task"] in app.tasks
        assert 0 < entry["options"]["expires"] < entry["schedule"]


# --- Health and /metrics -----------------------------------------------------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
REGISTERED = NOW - timedelta(days=100)


def last(status: str, days_ago: float, sampled=21, verified=21, error="") -> LastDrill:
    return LastDrill(status, NOW - timedelta(days=days_ago), sampled, verified, error)


def test_a_failed_drill_makes_the_pair_critical_with_how_many_objects_differ():
    findings = drill_findings(7, REGISTERED, last("failed", 1, verified=19), NOW)

    assert findings == [
        (
            "critical",
            "last restore drill failed (2026-12-05 12:00 UTC): 2 of 21 restored objects differ "
            "from the source",
        )
    ]


def test_a_drill_that_could_not_run_is_a_warning_with_its_reason():
    findings = drill_findings(7, REGISTERED, last("error", 1, error="access denied"), NOW)

    assert findings == [
        ("warning", "last restore drill could not run (2026-12-05 12:00 UTC): access denied")
    ]


def test_a_drill_overdue_twice_its_interval_is_a_warning():
    assert drill_findings(7, REGISTERED, last("passed", 14), NOW) == []
    assert drill_findings(7, REGISTERED, last("passed", 15), NOW) == [
        ("warning", "restore drill overdue: last one 15 days ago, due every 7 days")
    ]
    assert drill_findings(1, NOW - timedelta(days=3), None, NOW) == [
        ("warning", "restore drill overdue: none yet, due every day")
    ]
    assert drill_findings(7, NOW - timedelta(days=3), None, NOW) == []  # new pair


def test_drills_switched_off_give_no_findings():
    assert drill_findings(0, REGISTERED, last("failed", 30), NOW) == []


def test_health_findings_reads_each_pairs_latest_finished_drill(db):
    failing = make_pair(name="failing")
    fine = make_pair(name="fine")
    RestoreDrill.objects.create(pair=failing, status="passed", finished_at=timezone.now())
    RestoreDrill.objects.create(
        pair=failing, status="failed", sampled=21, verified=20, finished_at=timezone.now()
    )
    RestoreDrill.objects.create(pair=failing, status="running")  # not finished: not read
    RestoreDrill.objects.create(pair=fine, status="passed", finished_at=timezone.now())

    findings = health_findings([failing, fine], timezone.now())

    assert [state for state, _ in findings[failing.pk]] == ["critical"]
    assert findings[fine.pk] == []


def test_metrics_have_each_pairs_last_drill_time_and_result(db, client):
    pair = make_pair(name="drilled")
    finished = datetime(2026, 12, 1, tzinfo=UTC)
    RestoreDrill.objects.create(pair=pair, status="error", finished_at=finished)

    text = client.get("/metrics").content.decode()

    samples = {
        (sample.name, sample.labels["pair"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("backupsite_drill_")
    }
    assert samples == {
        ("backupsite_drill_last_timestamp_seconds", "drilled"): finished.timestamp(),
        ("backupsite_drill_last_passed", "drilled"): 0.0,
    }

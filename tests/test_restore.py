"""Point-in-time restore against moto: plans, copies, the job's resumption and the command."""

import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from replication import tasks
from replication.models import RestoredObject, RestoreJob
from replication.restore import copier
from replication.restore import job as restores
from tests.factories import make_pair
from tests.restore_support import PART, at, held, moments, put_in_parts, versioned

SOURCE = "site-src"
BACKUP = "site-bak"
SRC_PREFIX = "docs/"
BAK_PREFIX = "mirror/"
UNICODE = "résumé/naïve ✓ 東京.txt"
LONG = "long/" + "k" * (1024 - len(BAK_PREFIX) - len("long/"))  # 1,024 bytes in the backup


@pytest.fixture
def pair(db, s3):
    versioned(s3, SOURCE, BACKUP)
    return make_pair(
        name="site",
        source_bucket=SOURCE,
        source_prefix=SRC_PREFIX,
        backup_bucket=BACKUP,
        backup_prefix=BAK_PREFIX,
    )


@pytest.fixture
def history(s3, pair):
    """Four moments of a backup: overwrites, deletes, a key deleted and written again,
    multipart objects with irregular parts, a unicode key and a 1,024-byte key. Returns the
    moments and, for each, what the source held then: key -> (bytes, ETag)."""
    t = moments(4)
    states = []
    state: dict[str, tuple[bytes, str] | None] = {}

    def put(key: str, body: bytes) -> None:
        etag = s3.put_object(Bucket=BACKUP, Key=BAK_PREFIX + key, Body=body)["ETag"].strip('"')
        state[key] = (body, etag)

    def put_parts(key: str, sizes: list[int], fill: bytes) -> None:
        state[key] = put_in_parts(s3, BACKUP, BAK_PREFIX + key, sizes, fill)

    def delete(key: str) -> None:
        s3.delete_object(Bucket=BACKUP, Key=BAK_PREFIX + key)
        state.pop(key, None)

    with at(t[0]):
        put("a.txt", b"one")
        put("gone.txt", b"soon deleted")
        put(UNICODE, b"u1")
        put(LONG, b"long key")
        put_parts("big.bin", [PART + 7, PART + 1, 333], b"first")
    states.append(dict(state))
    with at(t[1]):
        put("a.txt", b"two")
        delete("gone.txt")
        put("late.txt", b"late")
    states.append(dict(state))
    with at(t[2]):
        put_parts("big.bin", [PART + 3, 100], b"second")
        put(UNICODE, b"u2")
        delete("a.txt")
    states.append(dict(state))
    with at(t[3]):
        put("gone.txt", b"back")
    states.append(dict(state))
    return t, states


def restore(pair, moment, target: str, **options):
    request = restores.make_request(pair, at=moment, to=target, **options)
    totals = restores.count_plan(restores_client(), request)
    job = restores.create_job(request, totals)
    return restores.run_job(job.pk, s3=restores_client(), threads=4)


def restores_client():
    from replication import s3 as s3_clients

    return s3_clients.client()


@pytest.mark.parametrize(
    "when, expected",
    [
        (lambda t: t[0] + timedelta(minutes=30), 0),
        (lambda t: t[1], 1),  # at the moment itself: inclusive
        (lambda t: t[1] + timedelta(minutes=59), 1),
        (lambda t: t[2] + timedelta(minutes=1), 2),
        (lambda t: timezone.now(), 3),
    ],
    ids=["after-first", "exactly-second", "before-third", "after-third", "now"],
)
def test_restore_brings_back_every_object_as_the_source_held_it_then(
    s3, pair, history, when, expected
):
    t, states = history
    s3.create_bucket(Bucket="restored")

    job = restore(pair, when(t), "restored")

    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert held(s3, "restored") == states[expected]
    assert job.restored == job.planned_objects == len(states[expected])
    assert job.failed == 0


def test_restore_keeps_multipart_part_boundaries_and_proves_each_copy_by_its_etag(
    s3, pair, history
):
    t, states = history
    s3.create_bucket(Bucket="restored")

    job = restore(pair, t[0] + timedelta(minutes=1), "restored/old/")

    assert "-3" in states[0]["big.bin"][1]  # three irregular parts
    restored = held(s3, "restored", "old/")
    assert restored["big.bin"] == states[0]["big.bin"]
    rows = {r.key: r for r in job.outcomes.all()}
    assert {r.verified_by for r in rows.values()} == {"etag"}
    assert rows[SRC_PREFIX + "big.bin"].target_key == "old/big.bin"


def test_plan_counts_deleted_and_not_yet_written_keys(s3, pair, history):
    t, _ = history
    request = restores.make_request(pair, at=t[1] + timedelta(minutes=1), to="elsewhere")

    totals = restores.count_plan(restores_client(), request)

    assert (totals.objects, totals.deleted, totals.absent) == (5, 1, 0)
    earlier = restores.make_request(pair, at=t[0] + timedelta(minutes=1), to="elsewhere")
    totals = restores.count_plan(restores_client(), earlier)
    assert (totals.objects, totals.deleted, totals.absent) == (5, 0, 1)  # late.txt


def test_restore_of_a_prefix_brings_back_only_its_keys(s3, pair, history):
    t, states = history
    s3.create_bucket(Bucket="restored")

    job = restore(pair, t[1], "restored", prefix=SRC_PREFIX + "résumé/")

    assert job.status == RestoreJob.Status.SUCCEEDED
    assert held(s3, "restored") == {UNICODE: states[1][UNICODE]}


def test_restore_into_the_source_writes_each_key_where_the_source_names_it(s3, pair, history):
    t, states = history

    job = restore(pair, t[0] + timedelta(minutes=1), "", into_source=True)

    assert job.status == RestoreJob.Status.SUCCEEDED
    assert held(s3, SOURCE, SRC_PREFIX) == states[0]


def test_a_restore_into_the_source_releases_the_guards_hold_as_keep(s3, pair, history):
    from django.utils import timezone

    from replication.models import GuardAudit, GuardHold

    t, states = history
    GuardHold.objects.create(
        pair=pair,
        since=timezone.now(),
        reason="2,000 deletes in 5 min, usually at most 10",
        changes=2000,
        usual=10,
        threshold=500,
    )

    job = restore(pair, t[0] + timedelta(minutes=1), "", into_source=True)

    assert job.status == RestoreJob.Status.SUCCEEDED
    hold = GuardHold.objects.get(pair=pair)
    assert hold.released_at is not None and hold.release == "keep"
    assert GuardAudit.objects.filter(pair=pair, action="released_keep").exists()
    assert held(s3, SOURCE, SRC_PREFIX) == states[0]


def test_restore_into_the_reserved_prefix_of_the_backup_is_allowed(s3, pair, history):
    t, states = history

    job = restore(pair, t[3], f"{BACKUP}/.backupsite/restores/1/")

    assert job.status == RestoreJob.Status.SUCCEEDED
    assert held(s3, BACKUP, ".backupsite/restores/1/") == states[3]


def test_a_worker_killed_mid_restore_resumes_and_copies_every_object_exactly_once(
    s3, pair, history, monkeypatch
):
    _, states = history
    s3.create_bucket(Bucket="restored")
    request = restores.make_request(pair, at=timezone.now(), to="restored")
    job = restores.create_job(request, restores.count_plan(restores_client(), request))
    copies: list[str] = []
    real_copy = copier.copy_version

    class WorkerKilled(BaseException):
        pass

    def copy_then_die(s3_, bucket, key, *args):
        if len(copies) == 2:
            raise WorkerKilled
        copies.append(key)
        return real_copy(s3_, bucket, key, *args)

    monkeypatch.setattr(restores, "copy_version", copy_then_die)
    monkeypatch.setattr(restores, "_CHUNK", 2)
    with pytest.raises(WorkerKilled):
        restores.run_job(job.pk, s3=restores_client(), threads=1)
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.RUNNING
    assert job.outcomes.filter(outcome=RestoredObject.Outcome.PENDING).exists()

    # The reaper finds it silent past the heartbeat timeout and queues it again.
    RestoreJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert restores.reap_stalled_jobs() == [job.pk]
    monkeypatch.setattr(
        restores, "copy_version", lambda *a: (copies.append(a[2]), real_copy(*a))[1]
    )
    job = restores.run_job(job.pk, s3=restores_client(), threads=4)

    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert job.attempt == 2
    assert sorted(copies) == sorted(BAK_PREFIX + key for key in states[3])
    assert held(s3, "restored") == states[3]
    assert job.restored == len(states[3]) and job.failed == 0


def test_a_restore_whose_copies_outlast_the_progress_interval_reports_and_goes_on(
    s3, pair, history, settings, monkeypatch
):
    _, states = history
    s3.create_bucket(Bucket="restored")
    settings.RECONCILE_PROGRESS_SECONDS = 0  # no copy ends before the job next reports
    real_copy = copier.copy_version

    def slow_copy(*args):
        time.sleep(0.05)
        return real_copy(*args)

    monkeypatch.setattr(restores, "copy_version", slow_copy)

    job = restore(pair, timezone.now(), "restored")

    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert held(s3, "restored") == states[3]


def test_a_copy_that_wrote_another_etag_is_recorded_with_it(s3, pair, history, monkeypatch):
    # As into a target that encrypts with KMS: the copy's ETag is not the version's.
    s3.create_bucket(Bucket="restored")
    real_copy = copier.copy_version

    def kms_copy(*args):
        done = real_copy(*args)
        return copier.Restored(done.ok, f"kms-{done.etag}", "checksum")

    monkeypatch.setattr(restores, "copy_version", kms_copy)

    job = restore(pair, timezone.now(), "restored")

    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    rows = list(job.outcomes.all())
    assert rows and all(row.written_etag == f"kms-{row.etag}" for row in rows)


def test_the_etag_a_copy_wrote_is_saved_as_it_ends_not_with_the_next_batch(pair):
    # The Lambda reports the write within seconds; outcomes are saved every few seconds.
    job = RestoreJob.objects.create(
        pair=pair, at=timezone.now(), target_bucket=pair.source_bucket, into_source=True
    )
    row = RestoredObject.objects.create(
        job=job, key="a.jpg", version_id="v1", size=3, etag="e" * 32, target_key="a.jpg"
    )
    progress = restores._Progress(job, on_progress=None)

    row.outcome, row.written_etag = RestoredObject.Outcome.RESTORED, "k" * 32
    progress.add(row)

    saved = RestoredObject.objects.get(pk=row.pk)
    assert (saved.written_etag, saved.outcome) == ("k" * 32, RestoredObject.Outcome.PENDING)


def test_a_job_another_attempt_took_over_stops_without_finishing_it(s3, pair, history):
    s3.create_bucket(Bucket="restored")
    request = restores.make_request(pair, at=timezone.now(), to="restored")
    job = restores.create_job(request, restores.count_plan(restores_client(), request))
    assert restores.claim_job(job.pk) is not None

    assert restores.run_job(job.pk, s3=restores_client()) is None  # alive elsewhere


def test_one_restore_at_a_time_per_target_bucket(s3, pair, history):
    request = restores.make_request(pair, at=timezone.now(), to="restored/a/")
    totals = restores.count_plan(restores_client(), request)
    first = restores.create_job(request, totals)
    other = restores.make_request(pair, at=timezone.now(), to="restored/b/")

    with pytest.raises(restores.RestoreRefused, match=f"already running \\(restore #{first.pk}"):
        restores.create_job(other, totals)


def test_a_target_that_denies_writes_stops_the_job_before_anything_is_restored(
    s3, pair, history, monkeypatch
):
    s3.create_bucket(Bucket="restored")
    denied = copier.Restored(False, error_code="AccessDenied", error="access denied: no")
    monkeypatch.setattr(restores, "copy_version", lambda *a: denied)

    job = restore(pair, timezone.now(), "restored")

    assert job.status == RestoreJob.Status.FAILED
    assert job.error.startswith("nothing restored: access denied")
    assert held(s3, "restored") == {}


# --- The command ------------------------------------------------------------------------------


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("restore", *args, stdout=out)
    return out.getvalue()


def test_command_json_reports_the_restore(s3, pair, history):
    t, states = history
    s3.create_bucket(Bucket="restored")

    result = json.loads(run("site", "--at", t[1].isoformat(), "--to", "restored", "--json"))

    job = RestoreJob.objects.get()
    assert result == {
        "restore": job.pk,
        "status": "succeeded",
        "objects": len(states[1]),
        "bytes": sum(len(body) for body, _ in states[1].values()),
        "restored": len(states[1]),
        "failed": 0,
        "skipped": 1,
        "duration_s": job.duration_s,
    }
    assert job.requested_by_name.endswith("(command line)")
    assert (job.at, job.target_bucket, job.prefix) == (t[1], "restored", SRC_PREFIX)


def test_command_dry_run_prints_the_plan_and_copies_nothing(s3, pair, history):
    t, _ = history
    s3.create_bucket(Bucket="restored")

    out = run("site", "--at", t[0].isoformat(), "--to", "restored", "--dry-run")

    assert "5 objects" in out and "dry run" in out
    assert not RestoreJob.objects.exists()
    assert held(s3, "restored") == {}


def _refused(*args) -> str:
    with pytest.raises(CommandError) as refused:
        run(*args)
    message = str(refused.value)
    assert "\n" not in message
    assert not RestoreJob.objects.exists()
    return message


def test_command_refuses_bad_input_in_one_line_and_changes_nothing(s3, pair, history):
    t, _ = history
    s3.create_bucket(Bucket="restored")
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    long_ago = (t[0] - timedelta(days=1)).isoformat()
    now = "now"

    assert "in the future" in _refused("site", "--at", future, "--to", "restored")
    assert "before the oldest backup version" in _refused(
        "site", "--at", long_ago, "--to", "restored"
    )
    assert "no target named" in _refused("site", "--at", now)
    assert "not a time" in _refused("site", "--at", "yesterday", "--to", "restored")
    assert "inside the pair's source" in _refused("site", "--at", now, "--to", f"{SOURCE}/docs/x/")
    assert "inside the pair's backup" in _refused("site", "--at", now, "--to", BACKUP)
    assert "does not exist" in _refused("site", "--at", now, "--to", "no-such-bucket")
    assert "--yes" in _refused("site", "--at", now, "--into-source")
    assert "nothing to restore" in _refused(
        "site", "--at", now, "--to", "restored", "--prefix", SRC_PREFIX + "nothing-here/"
    )
    assert "outside the pair's source prefix" in _refused(
        "site", "--at", now, "--to", "restored", "--prefix", "other/"
    )
    assert "no pair named" in _refused("nope", "--at", now, "--to", "restored")
    assert held(s3, "restored") == {}


def test_command_refuses_a_past_time_on_a_backup_without_versioning(s3, db):
    s3.create_bucket(Bucket="plain-src")
    s3.create_bucket(Bucket="plain-bak")
    s3.create_bucket(Bucket="restored")
    s3.put_object(Bucket="plain-bak", Key="k", Body=b"x")
    make_pair(name="plain", source_bucket="plain-src", backup_bucket="plain-bak")
    an_hour_ago = (timezone.now() - timedelta(hours=1)).isoformat()

    message = _refused("plain", "--at", an_hour_ago, "--to", "restored")

    assert "does not keep versions" in message
    run("plain", "--at", "now", "--to", "restored")
    assert held(s3, "restored") == {"k": (b"x", "9dd4e461268c8034f5c8564e155c67a6")}


def test_command_exits_non_zero_when_an_object_failed(s3, pair, history, monkeypatch):
    s3.create_bucket(Bucket="restored")
    real_copy = copier.copy_version

    def fail_unicode(s3_, bucket, key, *args):
        if key.endswith(UNICODE):
            return copier.Restored(False, error_code="InternalError", error="error: boom")
        return real_copy(s3_, bucket, key, *args)

    monkeypatch.setattr(restores, "copy_version", fail_unicode)

    with pytest.raises(CommandError, match="1 of 5 objects could not be restored"):
        run("site", "--at", "now", "--to", "restored")
    job = RestoreJob.objects.get()
    assert (job.status, job.restored, job.failed) == ("failed", 4, 1)
    failed = job.outcomes.get(outcome=RestoredObject.Outcome.FAILED)
    assert failed.key == SRC_PREFIX + UNICODE and failed.error == "error: boom"


def test_the_reaper_task_queues_a_silent_job_again_and_the_next_attempt_finishes_it(
    s3, pair, history
):
    _, states = history
    s3.create_bucket(Bucket="restored")
    request = restores.make_request(pair, at=timezone.now(), to="restored")
    job = restores.create_job(request, restores.count_plan(restores_client(), request))
    restores.claim_job(job.pk)  # a worker took it, then died without a word
    RestoreJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    assert tasks.reap_stalled_restores() == [job.pk]  # in-process in tests: it runs here

    job.refresh_from_db()
    assert (job.status, job.attempt, job.restored) == ("succeeded", 2, len(states[3]))


def test_a_job_whose_worker_keeps_dying_is_failed_with_the_reason(s3, pair, history, settings):
    request = restores.make_request(pair, at=timezone.now(), to="restored")
    job = restores.create_job(request, restores.count_plan(restores_client(), request))
    RestoreJob.objects.filter(pk=job.pk).update(
        status="running",
        attempt=settings.RESTORE_MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )

    assert restores.reap_stalled_jobs() == []

    job.refresh_from_db()
    assert job.status == "failed" and "stopped reporting 3 times" in job.error


def test_the_admin_shows_restores_and_drills_read_only(admin_client, s3, pair, history):
    request = restores.make_request(pair, at=timezone.now(), to="restored")
    job = restores.create_job(request, restores.count_plan(restores_client(), request))

    assert admin_client.get("/admin/replication/restorejob/").status_code == 200
    assert admin_client.get(f"/admin/replication/restorejob/{job.pk}/change/").status_code == 200
    assert admin_client.get("/admin/replication/restorejob/add/").status_code == 403
    assert admin_client.get("/admin/replication/restoredrill/").status_code == 200


def test_a_redelivered_task_knows_how_long_until_the_running_attempt_is_stale(
    s3, pair, history, settings
):
    request = restores.make_request(pair, at=timezone.now(), to="restored")
    job = restores.create_job(request, restores.count_plan(restores_client(), request))
    assert restores.seconds_until_stale(job.pk) is None  # queued: nobody holds it

    claimed = restores.claim_job(job.pk)
    later = claimed.heartbeat_at + timedelta(seconds=60)

    assert restores.seconds_until_stale(job.pk, now=later) == (
        settings.RECONCILE_HEARTBEAT_TIMEOUT - 60
    )
    assert restores.seconds_until_stale(job.pk, now=later + timedelta(days=1)) == 0

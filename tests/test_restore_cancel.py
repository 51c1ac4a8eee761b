"""Cancelling a restore: the worker stops copying, what it restored stays recorded, the target
is free again; from the job's page (permission, POST, CSRF) and from the command line."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from replication.models import RestoredObject, RestoreJob
from replication.restore import copier
from replication.restore import job as restores
from tests.factories import make_pair
from tests.restore_support import held, versioned

SOURCE = "photos-src"
BACKUP = "photos-bak"
OBJECTS = 40


@pytest.fixture
def pair(db, s3):
    versioned(s3, BACKUP)
    s3.create_bucket(Bucket="restored")
    for n in range(OBJECTS):
        s3.put_object(Bucket=BACKUP, Key=f"img/{n:02d}.jpg", Body=f"photo {n}".encode())
    return make_pair(name="photos", source_bucket=SOURCE, backup_bucket=BACKUP)


def queued_job(pair, to: str = "restored") -> RestoreJob:
    from replication import s3 as s3_clients

    request = restores.make_request(pair, at=timezone.now(), to=to)
    return restores.create_job(request, restores.count_plan(s3_clients.client(), request))


def run(job: RestoreJob) -> RestoreJob:
    from replication import s3 as s3_clients

    return restores.run_job(job.pk, s3=s3_clients.client(), threads=2)


@pytest.fixture
def cancelled_after_five_copies(pair, monkeypatch):
    """A job its operator cancels once five copies have ended; the keys it copied."""
    from replication import s3 as s3_clients

    job = queued_job(pair)
    copied: list[str] = []
    settled: list[int] = []
    real_copy = copier.copy_version

    def copy(s3_, bucket, key, *args):
        copied.append(key)
        return real_copy(s3_, bucket, key, *args)

    def on_progress(n: int) -> None:  # the worker's own thread, as a page's request would be
        settled.append(n)
        if len(settled) == 5:
            assert restores.cancel_job(job.pk, by_name="alice")

    monkeypatch.setattr(restores, "copy_version", copy)
    monkeypatch.setattr(restores, "_CHUNK", 4)
    ended = restores.run_job(job.pk, s3=s3_clients.client(), threads=2, on_progress=on_progress)
    return ended, copied


def test_a_cancelled_restore_stops_copying_and_records_what_it_restored(
    s3, cancelled_after_five_copies
):
    job, copied = cancelled_after_five_copies

    assert job.status == RestoreJob.Status.CANCELLED
    assert 5 <= len(copied) < OBJECTS  # the copies under way end; no new one starts
    assert job.restored == len(copied) == len(held(s3, "restored"))
    outcomes = job.outcomes.values_list("outcome", flat=True)
    assert list(outcomes) == [RestoredObject.Outcome.RESTORED] * len(copied)
    assert job.bytes_restored == sum(r.size for r in job.outcomes.all())
    assert (job.cancelled_by_name, job.error) == ("alice", "")


def test_a_cancelled_restore_frees_its_target_for_another(pair, cancelled_after_five_copies):
    job = queued_job(pair)

    assert run(job).status == RestoreJob.Status.SUCCEEDED
    assert job.outcomes.count() == OBJECTS


def test_a_restore_cancelled_while_it_plans_copies_nothing_and_keeps_no_rows(
    s3, pair, settings, monkeypatch
):
    from replication import s3 as s3_clients

    settings.RECONCILE_PROGRESS_SECONDS = 0  # it reports after each chunk of the plan
    monkeypatch.setattr(restores, "_SPOOL", 5)
    job = queued_job(pair)
    real = s3_clients.listing_client()

    class CancelledWhileListing:
        def list_object_versions(self, **params):
            restores.cancel_job(job.pk, by_name="alice")
            return real.list_object_versions(**params)

    job = restores.run_job(job.pk, s3=s3_clients.client(), lister=CancelledWhileListing())

    assert (job.status, job.restored, job.outcomes.count()) == ("cancelled", 0, 0)
    assert held(s3, "restored") == {}


def test_a_restore_cancelled_before_a_worker_took_it_is_never_run(s3, pair):
    job = queued_job(pair)

    assert restores.cancel_job(job.pk, by_name="alice")

    assert run(job) is None
    job.refresh_from_db()
    assert (job.status, job.restored, job.outcomes.count()) == ("cancelled", 0, 0)
    assert held(s3, "restored") == {}


def test_an_ended_restore_cannot_be_cancelled(pair):
    job = run(queued_job(pair))

    assert not restores.cancel_job(job.pk, by_name="alice")
    job.refresh_from_db()
    assert (job.status, job.cancelled_at) == ("succeeded", None)


def test_the_reaper_leaves_a_cancelled_restore_alone(pair):
    job = queued_job(pair)
    restores.claim_job(job.pk)
    restores.cancel_job(job.pk, by_name="alice")
    RestoreJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now().replace(year=2000))

    assert restores.reap_stalled_jobs() == []
    assert restores.claim_job(job.pk) is None


# --- The job's page ---------------------------------------------------------------------------


@pytest.fixture
def restorer(db, client):
    user = User.objects.create_user("restorer", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="restore_bucketpair"))
    client.force_login(user)
    return user


def test_the_job_page_cancels_a_running_restore_and_says_who_and_how_far(client, restorer, pair):
    job = queued_job(pair)
    restores.claim_job(job.pk)
    RestoreJob.objects.filter(pk=job.pk).update(restored=12)
    assert (
        f'action="/restores/{job.pk}/cancel/"'
        in client.get(f"/restores/{job.pk}/").content.decode()
    )

    response = client.post(f"/restores/{job.pk}/cancel/")

    assert response.status_code == 302 and response["Location"] == f"/restores/{job.pk}/"
    job.refresh_from_db()
    assert (job.status, job.cancelled_by, job.cancelled_by_name) == (
        "cancelled",
        restorer,
        "restorer",
    )
    page = client.get(f"/restores/{job.pk}/").content.decode()
    when = job.cancelled_at.strftime("%Y-%m-%d %H:%M UTC")
    said = f"Cancelled by restorer at {when}: 12 of {OBJECTS} restored."
    assert said in re.sub(r"<[^>]+>", "", page)
    assert "/cancel/" not in page  # nothing left to cancel


def test_cancelling_needs_the_permission_a_post_and_its_csrf_token(client, db, pair):
    job = queued_job(pair)
    viewer = User.objects.create_user("viewer", password="pw")
    client.force_login(viewer)
    assert "/cancel/" not in client.get(f"/restores/{job.pk}/").content.decode()
    assert client.post(f"/restores/{job.pk}/cancel/").status_code == 403

    viewer.user_permissions.add(Permission.objects.get(codename="restore_bucketpair"))
    assert client.get(f"/restores/{job.pk}/cancel/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(pk=viewer.pk))
    assert strict.post(f"/restores/{job.pk}/cancel/").status_code == 403
    assert client.post("/restores/999999/cancel/").status_code == 404

    job.refresh_from_db()
    assert job.status == RestoreJob.Status.QUEUED


# --- The command ------------------------------------------------------------------------------


def test_the_command_cancels_a_restore_and_refuses_an_ended_one(pair):
    job = queued_job(pair)
    out = StringIO()

    call_command("cancel_restore", str(job.pk), stdout=out)

    job.refresh_from_db()
    assert job.status == RestoreJob.Status.CANCELLED
    assert job.cancelled_by_name.endswith("(command line)")
    assert out.getvalue().startswith(f"restore #{job.pk} cancelled by ")
    assert f"0 of {OBJECTS} restored" in out.getvalue()
    with pytest.raises(CommandError, match="already ended \\(cancelled\\)"):
        call_command("cancel_restore", str(job.pk))
    with pytest.raises(CommandError, match="no restore #999999"):
        call_command("cancel_restore", "999999")


def test_a_restore_cancelled_after_its_last_copy_stays_cancelled(pair, monkeypatch):
    job = queued_job(pair)
    real_finish = restores.finish_job

    def cancelled_first(job_, **options):
        restores.cancel_job(job_.pk, by_name="alice")
        return real_finish(job_, **options)

    monkeypatch.setattr(restores, "finish_job", cancelled_first)

    job = run(job)

    assert (job.status, job.restored, job.error) == ("cancelled", OBJECTS, "")


def test_each_copy_keeps_its_own_outcome_and_time_when_saved(pair):
    """Outcomes go to the database in one batch, but each row with its own values."""
    job = queued_job(pair)
    rows = [
        RestoredObject(
            job=job, key=f"img/{n}.jpg", version_id="v", size=1, etag="e", target_key=f"t/{n}"
        )
        for n in range(3)
    ]
    RestoredObject.objects.bulk_create(rows)
    rows = list(job.outcomes.order_by("id"))
    now = timezone.now()
    for n, (row, outcome) in enumerate(zip(rows, ["restored", "failed", "restored"], strict=True)):
        row.outcome, row.verified_by = outcome, "copy"
        row.error_code, row.error = ("AccessDenied", "denied") if outcome == "failed" else ("", "")
        row.finished_at = now - timedelta(seconds=n)

    restores.save_outcomes(rows)

    saved = list(job.outcomes.order_by("id").values_list("outcome", "error_code", "finished_at"))
    assert saved == [
        ("restored", "", now),
        ("failed", "AccessDenied", now - timedelta(seconds=1)),
        ("restored", "", now - timedelta(seconds=2)),
    ]

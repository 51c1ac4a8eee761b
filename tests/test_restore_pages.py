"""The restore pages: "Restore..." (plan, then confirm), the job's page, its CSV, and the
pair page's restore panel."""

import csv
import html
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from replication.models import ReconcileRun, RestoreDrill, RestoreJob, RestorePoint
from tests.factories import make_pair
from tests.restore_support import held, versioned

SOURCE = "photos-src"
BACKUP = "photos-bak"


@pytest.fixture
def pair(db, s3):
    versioned(s3, BACKUP)
    s3.create_bucket(Bucket="restored")
    for n in range(3):
        s3.put_object(Bucket=BACKUP, Key=f"img/{n}.jpg", Body=f"photo {n}".encode())
    return make_pair(name="photos", source_bucket=SOURCE, backup_bucket=BACKUP)


@pytest.fixture
def viewer(db, client):
    user = User.objects.create_user("viewer", password="pw")
    client.force_login(user)
    return user


@pytest.fixture
def restorer(db, client):
    user = User.objects.create_user("restorer", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="restore_bucketpair"))
    client.force_login(user)
    return user


def ask(client, step: str, **fields):
    data = {"at": "now", "prefix": "", "to": "restored", "step": step, **fields}
    return client.post("/pairs/photos/restore/", data)


def test_restoring_needs_the_permission(client, viewer, pair):
    assert client.get("/pairs/photos/restore/").status_code == 403
    assert "Restore…" not in client.get("/pairs/photos/restore/panel/").content.decode()
    assert ask(client, "confirm").status_code == 403
    assert not RestoreJob.objects.exists()
    assert "Restore…" not in client.get("/pairs/photos/").content.decode()


def test_the_plan_comes_first_and_changes_nothing(client, restorer, pair, s3):
    response = ask(client, "plan")

    body = response.content.decode()
    assert response.status_code == 200
    assert "<strong>3</strong> objects" in body and "Restore 3 objects" in body
    assert not RestoreJob.objects.exists()
    assert held(s3, "restored") == {}


def test_confirming_queues_the_job_and_shows_its_page(client, restorer, pair, s3):
    response = ask(client, "confirm")  # tasks run in-process in tests

    job = RestoreJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/restores/{job.pk}/"
    assert (job.status, job.restored, job.via, job.requested_by) == (
        "succeeded",
        3,
        "page",
        restorer,
    )
    assert job.requested_by_name == "restorer"
    assert set(held(s3, "restored")) == {"img/0.jpg", "img/1.jpg", "img/2.jpg"}
    page = client.get(f"/restores/{job.pk}/").content.decode()
    assert f"Restore #{job.pk}" in page and "img/2.jpg" in page and "asked by restorer" in page


def test_the_outcomes_download_as_csv(client, restorer, pair):
    ask(client, "confirm")
    job = RestoreJob.objects.get()

    response = client.get(f"/restores/{job.pk}/outcomes.csv")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["key"] for r in rows] == ["img/0.jpg", "img/1.jpg", "img/2.jpg"]
    assert {r["outcome"] for r in rows} == {"restored"}
    assert {r["verified_by"] for r in rows} == {"etag"}


def test_bad_input_is_shown_on_the_form_and_changes_nothing(client, restorer, pair):
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    cases = {
        "in the future": {"at": future},
        "not a time": {"at": "soon"},
        "no target named": {"to": ""},
        "inside the pair's backup": {"to": BACKUP},
        "does not exist": {"to": "no-such-bucket"},
    }
    for expected, fields in cases.items():
        response = ask(client, "confirm", **fields)
        assert response.status_code == 400
        assert expected in html.unescape(response.content.decode())
    assert not RestoreJob.objects.exists()


def test_restoring_into_the_source_needs_the_explicit_confirmation(client, restorer, pair, s3):
    s3.create_bucket(Bucket=SOURCE)
    plan = ask(client, "plan", to="", into_source="1").content.decode()
    assert "overwrites 3 objects in the source" in plan

    refused = ask(client, "confirm", to="", into_source="1")
    assert refused.status_code == 400 and not RestoreJob.objects.exists()

    ask(client, "confirm", to="", into_source="1", overwrite_source="1")
    assert RestoreJob.objects.get().into_source
    assert set(held(s3, SOURCE)) == {"img/0.jpg", "img/1.jpg", "img/2.jpg"}


def test_the_progress_fragment_of_a_running_job_polls(client, viewer, pair):
    job = RestoreJob.objects.create(
        pair=pair,
        at=timezone.now(),
        target_bucket="restored",
        status="running",
        planned_objects=10,
        restored=4,
    )

    body = client.get(f"/restores/{job.pk}/progress/").content.decode()

    assert 'hx-trigger="every 2s"' in body and "<strong>4</strong> of 10 objects done" in body


def test_pair_page_says_when_the_backup_was_last_verified_restorable(client, restorer, pair):
    finished = timezone.now() - timedelta(days=2)
    RestoreDrill.objects.create(
        pair=pair,
        status="passed",
        sampled=21,
        verified=21,
        sampled_bytes=1_200_000_000,
        duration_s=41,
        throughput_bytes_s=1_200_000_000 / 41,
        finished_at=finished,
    )
    ReconcileRun.objects.create(
        pair=pair,
        status="succeeded",
        verdict="in_sync",
        destination_bytes=12_000_000_000,
        finished_at=timezone.now(),
    )

    page = client.get("/pairs/photos/").content.decode()
    body = client.get("/pairs/photos/restore/panel/").content.decode()

    assert 'hx-get="/pairs/photos/restore/panel/" hx-trigger="load"' in page
    assert "Restore…" in page
    assert "Last verified restorable" in body
    assert "2\xa0days ago): 21 of 21 objects, 1.2 GB in 41 s" in body
    assert "Estimated full restore: about 6 min 50 s for 12.0 GB" in body
    assert "Restore…" in body


def test_the_panel_says_when_a_drill_failed_and_lists_recent_restores(client, viewer, pair):
    RestoreDrill.objects.create(
        pair=pair,
        status="failed",
        sampled=21,
        verified=20,
        error="1 of 21 objects differ",
        finished_at=timezone.now(),
    )
    job = RestoreJob.objects.create(
        pair=pair,
        at=timezone.now(),
        target_bucket="restored",
        status="succeeded",
        planned_objects=3,
        restored=3,
    )

    body = client.get("/pairs/photos/restore/panel/").content.decode()

    assert "No restore drill has passed yet." in body
    assert "Last restore drill failed" in body and "1 of 21 objects differ" in body
    assert f'href="/restores/{job.pk}/"' in body and "3 of 3" in body


# --- "Run drill now" -------------------------------------------------------------------------


@pytest.fixture
def drillable(pair, s3):
    """The backup's objects, unchanged in the source: what a drill samples."""
    for n in range(3):
        s3.put_object(Bucket=SOURCE, Key=f"img/{n}.jpg", Body=f"photo {n}".encode())
    return pair


def test_running_a_drill_needs_the_permission(client, viewer, drillable):
    assert client.post("/pairs/photos/drill/").status_code == 403
    assert not RestoreDrill.objects.exists()
    assert "Run drill now" not in client.get("/pairs/photos/restore/panel/").content.decode()


def test_run_drill_now_restores_a_sample_and_the_panel_shows_the_result(
    client, restorer, drillable, s3
):
    response = client.post("/pairs/photos/drill/")  # tasks run in-process in tests

    drill = RestoreDrill.objects.get()
    assert response.status_code == 302 and response["Location"] == "/pairs/photos/#restore"
    assert (drill.status, drill.sampled, drill.verified) == ("passed", 3, 3)
    assert (drill.trigger, drill.requested_by, drill.requested_by_name) == (
        "manual",
        restorer,
        "restorer",
    )
    assert held(s3, BACKUP, ".backupsite/") == {}  # the scratch copies are gone
    page = client.get(response["Location"]).content.decode()
    assert f"Restore drill #{drill.pk} passed: 3 of 3 objects" in page
    panel = client.get("/pairs/photos/restore/panel/").content.decode()
    assert "Last verified restorable" in panel and "3 of 3 objects" in panel
    assert "Run drill now" in panel


def test_run_drill_now_while_one_runs_starts_no_second(client, restorer, drillable):
    running = RestoreDrill.objects.create(pair=drillable, scratch="photos-bak/.backupsite/x/")

    response = client.post("/pairs/photos/drill/", follow=True)

    assert list(RestoreDrill.objects.values_list("id", flat=True)) == [running.pk]
    assert "a restore drill of photos is already running" in response.content.decode()


def test_run_drill_now_without_a_queue_ends_the_drill_as_error_with_the_reason(
    client, restorer, drillable, monkeypatch
):
    from celery import current_app

    current_app.loader.import_default_modules()
    task = current_app.tasks["replication.tasks.run_restore_drill"]

    def refuse(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(task, "apply_async", refuse)
    monkeypatch.setitem(task.app.conf, "task_always_eager", False)  # a broker, down

    response = client.post("/pairs/photos/drill/", follow=True)

    drill = RestoreDrill.objects.get()
    assert drill.status == "error" and drill.finished_at is not None
    assert "task queue is unavailable" in drill.error and "Redis is down" in drill.error
    assert "task queue is unavailable" in response.content.decode()


def test_the_panel_of_a_running_drill_reloads_itself_until_it_ends(client, restorer, pair):
    RestoreDrill.objects.create(pair=pair, scratch="photos-bak/.backupsite/x/")

    body = client.get("/pairs/photos/restore/panel/").content.decode()

    assert 'hx-get="/pairs/photos/restore/panel/" hx-trigger="every 2s"' in body
    assert "is running" in body and "Run drill now" not in body


# --- restore points: "Something to restore" ----------------------------------------------------


def test_a_restore_point_is_offered_with_restore_prefilled(client, restorer, pair):
    moment = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    RestorePoint.objects.create(
        pair=pair, at=moment, prefix="img/", reason="2 objects under img/ were overwritten"
    )

    body = html.unescape(client.get("/pairs/photos/restore/panel/").content.decode())

    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "Something to restore:" in body and "2 objects under img/ were overwritten" in body
    link = (
        f"/pairs/photos/restore/?at={stamp.replace(':', '%3A')}&prefix=img%2F"
        "&to=photos-bak%2F.backupsite%2Frestores%2F"
    )
    assert f'href="{link}"' in body
    form = client.get(link).content.decode()
    assert f'name="at" value="{stamp}"' in form
    assert 'name="prefix" value="img/"' in form
    assert 'name="to" value="photos-bak/.backupsite/restores/"' in form


def test_a_restore_point_is_offered_only_until_a_restore_of_it_starts(client, restorer, pair):
    moment = timezone.now().replace(microsecond=0)
    RestorePoint.objects.create(pair=pair, at=moment, prefix="img/", reason="overwritten")

    ask(client, "confirm", at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"), prefix="img/")

    assert RestoreJob.objects.get().status == "succeeded"
    body = client.get("/pairs/photos/restore/panel/").content.decode()
    assert "Something to restore" not in body


def test_a_prefilled_form_with_bad_values_says_so_at_the_plan_and_changes_nothing(
    client, restorer, pair
):
    form = client.get("/pairs/photos/restore/?at=yesterday-ish&prefix=img/")
    assert form.status_code == 200

    response = ask(client, "plan", at="yesterday-ish")

    assert response.status_code == 400 and not RestoreJob.objects.exists()


def test_a_restore_point_counts_as_restored_only_by_a_job_of_its_moment_and_prefix():
    from types import SimpleNamespace as Row

    from replication.restore.views import unrestored

    moment = timezone.now().replace(microsecond=0)
    newer, older = Row(at=moment, prefix="raw/"), Row(at=moment - timedelta(hours=1), prefix="")

    assert unrestored([newer, older], []) is newer
    assert unrestored([newer, older], [Row(at=moment, prefix="")]) is newer
    assert unrestored([newer, older], [Row(at=moment - timedelta(seconds=1), prefix="raw/")])
    assert unrestored([newer, older], [Row(at=moment, prefix="raw/")]) is older
    assert unrestored([newer], [Row(at=moment, prefix="raw/")]) is None


def test_a_drill_that_breaks_in_process_ends_as_error_with_what_broke(
    client, restorer, drillable, monkeypatch
):
    from replication.restore import drill as drills

    def broken(drill_id, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(drills, "run_drill", broken)

    response = client.post("/pairs/photos/drill/", follow=True)

    drill = RestoreDrill.objects.get()
    assert (drill.status, drill.error) == ("error", "the drill stopped: the database went away")
    assert "the drill stopped: the database went away" in response.content.decode()

"""How a run's verdict and progress read on the pages: in flight beside the verdict, what a
repair found and did, and progress that says what is happening."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from replication.models import ReconcileRun
from replication.templatetags.dashboard import count
from tests.factories import make_pair


@pytest.fixture
def viewer(db, client):
    client.force_login(User.objects.create_user("viewer", password="pw"))
    return client


@pytest.fixture
def photos(db):
    return make_pair(name="photos")


def finished(pair, **fields) -> ReconcileRun:
    now = timezone.now()
    values = {
        "status": "succeeded",
        "verdict": "in_sync",
        "started_at": now - timedelta(seconds=12),
        "finished_at": now,
    }
    return ReconcileRun.objects.create(pair=pair, **(values | fields))


def repaired(pair) -> ReconcileRun:
    return finished(
        pair,
        repair=True,
        missing=52,
        mismatched=6,
        extra=1,
        repair_total=58,
        repaired=58,
        repaired_missing=52,
        repaired_mismatched=6,
    )


def text(html: str) -> str:
    # Runs of ASCII white space only: counts are grouped with thin spaces.
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def pages(client, run) -> dict[str, str]:
    return {
        "run": text(client.get(f"/runs/{run.pk}/").content.decode()),
        "pair": text(client.get(f"/pairs/{run.pair.name}/").content.decode()),
        "overview": text(client.get("/").content.decode()),
    }


def test_in_flight_stands_beside_the_verdict_on_every_page(viewer, photos):
    run = finished(photos, in_flight=12, source_objects=1002, destination_objects=990)

    for name, body in pages(viewer, run).items():
        assert re.search(r"in sync\s*·\s*12 in flight", body), name


def test_after_a_repair_every_page_says_what_was_found_and_repaired(viewer, photos):
    run = repaired(photos)

    for name, body in pages(viewer, run).items():
        found = r"in sync after repair\s*:\s*52 missing and 6 mismatched copied; 1 extra kept"
        assert re.search(found, body), name


def test_a_repaired_run_shows_no_missing_count_in_red(viewer, photos):
    body = viewer.get(f"/runs/{repaired(photos).pk}/").content.decode()
    assert "state-text-critical" not in body
    partly = finished(
        photos, verdict="out_of_sync", repair=True, missing=3, repaired=2, repaired_missing=2
    )
    assert "state-text-critical" in viewer.get(f"/runs/{partly.pk}/").content.decode()


def test_a_queued_run_says_it_waits_for_a_worker(viewer, photos):
    run = ReconcileRun.objects.create(pair=photos)

    body = text(viewer.get(f"/runs/{run.pk}/progress/").content.decode())

    assert "Waiting for a worker to take it" in body
    assert "?" not in body and "ranges done" not in body


def test_a_repair_shows_how_far_its_copying_has_come(viewer, photos):
    run = ReconcileRun.objects.create(
        pair=photos,
        repair=True,
        status="running",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        objects_scanned=25_000,
        ranges_total=1,
        ranges_done=0,
        repair_total=5_000,
        repaired=1_234,
    )

    body = text(viewer.get(f"/runs/{run.pk}/progress/").content.decode())

    assert f"Repair: copying {count(1_234)} of {count(5_000)} found so far" in body

"""Keys kept at a guard release ("keep the backup as it is"): recorded with the backup's
ETag, never lacking, counted ``kept`` by reconcile (neither missing, mismatched nor extra,
never repaired) until the source changes them again."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from replication.models import GuardAudit, GuardHold, ObjectState
from replication.models.events import Finding
from replication.protection import guard
from replication.reconcile.diff import EXTRA, KEPT, MISMATCHED, Entry, Tally, diff
from replication.reconcile.verdict import verdict
from replication.reconcile.wording import verdict_line
from tests.factories import make_pair, record_events
from tests.reconcile_support import an_hour_ago, found, reconcile_now

SOURCE, BACKUP = "photos-src", "photos-bak"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"


# --- the merge (pure)


def merge(source, backup, kept):
    tally = Tally()
    records = {key: (etag, at) for key, etag, at in kept}

    def is_kept(key, s, b):
        from replication.reconcile.diff import still_kept

        return key in records and still_kept(*records[key], s, b)

    out = [
        (d.kind, d.key)
        for d in diff(
            source, backup, in_flight_after=NOW - timedelta(minutes=15), tally=tally, kept=is_kept
        )
    ]
    return out, tally


def entry(key, etag=MD5_A, modified=NOW - timedelta(hours=2)):
    return Entry(key, 1, etag, modified)


def test_a_kept_delete_is_counted_kept_not_extra():
    out, tally = merge([], [entry("a")], [("a", MD5_A, NOW - timedelta(hours=1))])
    assert out == [(KEPT, "a")]
    assert (tally.kept, tally.extra, tally.destination_objects) == (1, 0, 1)


def test_a_kept_overwrite_is_kept_even_while_the_source_write_is_young():
    young = NOW - timedelta(seconds=30)
    out, tally = merge([entry("a", MD5_B, young)], [entry("a")], [("a", MD5_A, NOW)])
    assert out == [(KEPT, "a")]
    assert (tally.kept, tally.mismatched, tally.in_flight) == (1, 0, 0)


def test_a_source_changed_after_the_release_ends_the_kept_record():
    kept_at = NOW - timedelta(hours=3)
    out, tally = merge([entry("a", MD5_B)], [entry("a")], [("a", MD5_A, kept_at)])
    assert out == [(MISMATCHED, "a")] and tally.kept == 0


def test_a_backup_no_longer_holding_the_kept_etag_is_not_kept():
    out, _ = merge([], [entry("a", MD5_B)], [("a", MD5_A, NOW)])
    assert out == [(EXTRA, "a")]


def test_kept_keys_leave_a_mirroring_pairs_verdict_in_sync_and_read_as_kept():
    assert (
        verdict(
            missing=0, mismatched=0, extra=0, unverified=0, mirror_deletes=True, source_objects=3
        )
        == "in_sync"
    )

    class Run:
        pk, verdict, repair, in_flight, kept = 7, "in_sync", False, 0, 1
        missing = mismatched = extra = unverified = 0

    assert verdict_line(Run()) == "in sync · 1 kept"


# --- the release and reconcile, against moto


@pytest.fixture
def held(db, s3):
    """A mirroring pair whose guard held a delete of a.jpg and an overwrite of b.jpg (both in
    the backup), and a delete of gone.jpg the backup does not hold."""
    pair = make_pair(
        name="photos",
        source_bucket=SOURCE,
        backup_bucket=BACKUP,
        mirror_deletes=True,
        grace_seconds=600,
    )
    with an_hour_ago():
        s3.put_object(Bucket=BACKUP, Key="a.jpg", Body=b"old a")
        s3.put_object(Bucket=BACKUP, Key="b.jpg", Body=b"old b")
        s3.put_object(Bucket=SOURCE, Key="b.jpg", Body=b"garbage")
        s3.put_object(Bucket=SOURCE, Key="c.jpg", Body=b"c")
        s3.put_object(Bucket=BACKUP, Key="c.jpg", Body=b"c")
    now = timezone.now()
    GuardHold.objects.create(
        pair=pair,
        since=now - timedelta(minutes=10),
        reason="2,000 deletes",
        changes=2000,
        usual=10,
        threshold=500,
    )
    at = {"event_time": now - timedelta(minutes=5), "finished_at": now - timedelta(minutes=4)}
    record_events(
        pair,
        {"key": "a.jpg", "event_name": "ObjectRemoved:Delete", "status": "held", "etag": "", **at},
        {"key": "b.jpg", "event_name": "ObjectCreated:Put", "status": "held", **at},
        {"key": "gone.jpg", "event_name": "ObjectRemoved:Delete", "status": "held", **at},
    )
    return pair


def etag(s3, key):
    return s3.head_object(Bucket=BACKUP, Key=key)["ETag"].strip('"')


def test_keep_records_each_held_key_the_backup_holds_as_kept_with_its_etag(held, s3, admin_user):
    guard.release(held, admin_user, "keep")

    kept = {
        row.key: row
        for row in ObjectState.objects.filter(pair=held, finding=Finding.KEPT).order_by("key")
    }
    assert set(kept) == {"a.jpg", "b.jpg"}  # gone.jpg: the backup has nothing to keep
    assert kept["a.jpg"].kept_etag == etag(s3, "a.jpg")
    assert kept["b.jpg"].kept_etag == etag(s3, "b.jpg")
    assert kept["a.jpg"].kept_at == GuardHold.objects.get().released_at
    assert not ObjectState.objects.filter(pair=held).lacking().exists()
    assert guard.kept_count(held) == 2
    note = GuardAudit.objects.get(action="released_keep").note
    assert "2 kept as the backup holds them (1 deletes, 1 overwrites not applied)" in note


def test_reconcile_counts_kept_keys_kept_and_a_mirroring_pair_in_sync(held, s3, admin_user):
    guard.release(held, admin_user, "keep")

    run = reconcile_now(held)

    assert run.verdict == "in_sync", found(run)
    assert (run.kept, run.extra, run.mismatched, run.missing) == (2, 0, 0, 0)
    assert found(run) == {}


def test_repair_neither_deletes_nor_overwrites_a_kept_key(held, s3, admin_user):
    guard.release(held, admin_user, "keep")

    run = reconcile_now(held, repair=True)

    assert run.kept == 2 and run.extras_deleted == 0 and run.repaired == 0
    assert s3.get_object(Bucket=BACKUP, Key="a.jpg")["Body"].read() == b"old a"
    assert s3.get_object(Bucket=BACKUP, Key="b.jpg")["Body"].read() == b"old b"
    assert guard.kept_count(held) == 2  # a run that kept them leaves the records


def test_a_key_the_source_changes_again_is_repaired_as_usual(held, s3, admin_user):
    release = timezone.now()
    guard.release(held, admin_user, "keep", now=release - timedelta(minutes=30))
    with time_machine.travel(release - timedelta(minutes=20), tick=True):
        s3.put_object(Bucket=SOURCE, Key="b.jpg", Body=b"new b")  # after the release

    run = reconcile_now(held, repair=True)

    assert run.kept == 1 and run.repaired_mismatched == 1
    assert s3.get_object(Bucket=BACKUP, Key="b.jpg")["Body"].read() == b"new b"
    state = ObjectState.objects.get(pair=held, key="b.jpg")
    assert (state.finding, state.kept_etag, state.kept_at) == (Finding.REPAIRED, "", None)


def test_the_pair_page_and_the_json_show_the_kept_keys(held, s3, admin_user, client, capsys):
    guard.release(held, admin_user, "keep")
    client.force_login(admin_user)
    page = client.get(f"/pairs/{held.name}/").content.decode()
    assert "2 kept</strong>" in page

    call_command("reconcile", held.name, "--json")
    assert json.loads(capsys.readouterr().out)["kept"] == 2


def test_a_held_key_the_backup_will_not_show_is_not_recorded_and_the_audit_says_so(
    held, s3, admin_user, monkeypatch
):
    from botocore.exceptions import ClientError

    from replication import s3 as s3_clients

    class Denied:
        def head_object(self, **_):
            raise ClientError({"Error": {"Code": "AccessDenied"}}, "HeadObject")

    monkeypatch.setattr(s3_clients, "client", lambda region=None: Denied())
    guard.release(held, admin_user, "keep")

    assert not ObjectState.objects.filter(pair=held, finding=Finding.KEPT).exists()
    assert not GuardHold.objects.filter(released_at__isnull=True).exists()  # released all the same
    note = GuardAudit.objects.get(action="released_keep").note
    assert "0 kept" in note and "3 could not be read from the backup (not recorded)" in note

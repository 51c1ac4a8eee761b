"""What the backup lacks: one model, the same count and the same "behind by" on every surface.

Through the real ingest API (signed posts) and real reconciles against moto; on PostgreSQL
when DATABASE_URL names one (CI does).
"""

import json
import re
import time
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from replication.alerts.tasks import evaluate_health
from replication.ingest import store, views
from replication.ingest.signing import sign
from replication.models import AlertChannel, HealthChange, ObjectState
from replication.models.events import Finding
from replication.reconcile.findings import upsert_findings
from replication.status.facts import pair_health
from replication.status.health import State, duration
from tests.factories import event_payload, make_ingest_key, make_pair
from tests.reconcile_support import reconcile_now

SOURCE, BACKUP = "photos-src", "photos-bak"
GRACE = timedelta(minutes=10)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    views._keys.clear()
    store._pairs.clear()


@pytest.fixture
def photos(db):
    return make_pair(
        name="photos",
        source_bucket=SOURCE,
        backup_bucket=BACKUP,
        grace_seconds=int(GRACE.total_seconds()),
    )


@pytest.fixture
def report(client, db):
    """Post copy results through the ingest API, signed as the Lambda signs them."""
    key = make_ingest_key(name="lambda")

    def report(*payloads):
        raw = json.dumps({"events": list(payloads)}).encode()
        stamp = str(int(time.time()))
        response = client.post(
            "/api/v1/events",
            data=raw,
            content_type="application/json",
            headers={
                "X-Backup-Key": key.key_id,
                "X-Backup-Timestamp": stamp,
                "X-Backup-Signature": sign(key.secret, stamp, raw),
            },
        )
        assert response.status_code == 202, response.content
        assert not response.json()["rejected"]

    return report


def written(s3, key: str, ago: timedelta, body: bytes = b"photo", bucket: str = SOURCE):
    """Put an object as if written ``ago``; its LastModified as S3 reports it."""
    with time_machine.travel(timezone.now() - ago, tick=False):
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return s3.head_object(Bucket=bucket, Key=key)["LastModified"]


def result(key: str, event_time, sequencer: str, status: str = "copied", **fields) -> dict:
    finished = fields.pop("finished_at", event_time + timedelta(seconds=1))
    return event_payload(
        source_bucket=fields.pop("source_bucket", SOURCE),
        destination_bucket=fields.pop("destination_bucket", BACKUP),
        key=key,
        event_time=event_time.isoformat(),
        started_at=event_time.isoformat(),
        finished_at=finished.isoformat(),
        sequencer=sequencer,
        status=status,
        error_code="AccessDenied" if status == "failed" else None,
        **fields,
    )


def lacking_keys(pair) -> set[str]:
    """What the backup lacks, checked on the way to be exactly what the counts read: the two
    disjoint parts that pages, /metrics and alerts count (lacking_in_parts)."""
    keys = set(ObjectState.objects.lacking().filter(pair=pair).values_list("key", flat=True))
    failed, found = (
        set(part.values_list("key", flat=True))
        for part in ObjectState.objects.filter(pair=pair).lacking_in_parts()
    )
    assert not failed & found and failed | found == keys
    return keys


# --- The supersede rule -------------------------------------------------------------------------


def test_a_retry_of_the_same_event_resolves_the_failure_and_the_finding_after_it(
    s3, photos, report
):
    # The case: a copy failed, a reconcile found the object missing, then a retry of
    # the same S3 event (same event time and sequencer, higher attempt) copied it.
    modified = written(s3, "a.jpg", timedelta(hours=1))
    failed = result("a.jpg", modified, "00A1", "failed")
    report(failed)
    run = reconcile_now(photos)
    assert run.missing == 1
    assert lacking_keys(photos) == {"a.jpg"}

    s3.copy_object(Bucket=BACKUP, Key="a.jpg", CopySource={"Bucket": SOURCE, "Key": "a.jpg"})
    report({**failed, "status": "copied", "error_code": None, "attempt": 2,
            "finished_at": timezone.now().isoformat()})  # fmt: skip

    assert lacking_keys(photos) == set()
    (entry,) = pair_health()
    assert (entry.facts.lacking.total, entry.facts.lacking.behind_by(timezone.now())) == (0, None)
    assert entry.health.state != State.CRITICAL  # only the retry's hour of lag is left
    assert not any("lacking" in reason for reason in entry.health.reasons)


def test_a_copy_that_finished_before_the_run_listed_the_key_does_not_hide_its_finding(
    s3, photos, report
):
    # Copied an hour ago, then lost from the backup: the run's "missing" is newer.
    modified = written(s3, "a.jpg", timedelta(hours=1))
    report(result("a.jpg", modified, "00A1"))
    reconcile_now(photos)
    assert lacking_keys(photos) == {"a.jpg"}


def test_a_newer_write_that_failed_after_an_in_sync_finding_is_lacking(s3, photos, report):
    modified = written(s3, "a.jpg", timedelta(hours=1))
    written(s3, "a.jpg", timedelta(hours=1), bucket=BACKUP)
    report(result("a.jpg", modified, "00A1", "failed"))
    reconcile_now(photos)  # found in sync: the old failure is resolved
    assert lacking_keys(photos) == set()
    report(result("a.jpg", timezone.now(), "00A2", "failed"))
    assert lacking_keys(photos) == {"a.jpg"}


def test_a_failed_retry_never_supersedes_a_lacking_finding(s3, photos, report):
    modified = written(s3, "a.jpg", timedelta(hours=1))
    failed = result("a.jpg", modified, "00A1", "failed")
    report(failed)
    reconcile_now(photos)
    report({**failed, "attempt": 2, "finished_at": timezone.now().isoformat()})
    assert lacking_keys(photos) == {"a.jpg"}


def test_a_reconcile_that_finds_it_in_sync_resolves_a_finding_and_a_failure(s3, photos, report):
    modified = written(s3, "a.jpg", timedelta(hours=1))
    report(result("a.jpg", modified, "00A1", "failed"))
    reconcile_now(photos)
    written(s3, "a.jpg", timedelta(minutes=30), bucket=BACKUP)  # copied by hand, no report
    reconcile_now(photos)
    assert lacking_keys(photos) == set()


def test_an_object_lacking_counts_once_whatever_says_so(s3, photos, report):
    # A failed copy that a run then found missing is one object lacking, not two.
    modified = written(s3, "a.jpg", timedelta(hours=1))
    report(result("a.jpg", modified, "00A1", "failed"))
    reconcile_now(photos)
    (entry,) = pair_health()
    assert entry.facts.lacking.total == 1


def test_objects_written_with_no_copy_report_warn_that_the_lambda_may_not_run(s3, photos):
    type(photos).objects.filter(pk=photos.pk).update(created_at=timezone.now() - timedelta(days=1))
    written(s3, "unreported.jpg", timedelta(minutes=30))
    written(s3, "unreported.jpg", timedelta(minutes=30), body=b"older", bucket=BACKUP)
    reconcile_now(photos)
    (entry,) = pair_health()
    assert entry.facts.unreported == 1
    assert any(
        reason.startswith(
            "objects written with no copy report: is the Lambda or its trigger running?"
        )
        for reason in entry.health.reasons
    )


def test_objects_written_before_the_pair_was_registered_are_not_unreported(s3):
    written(s3, "old.jpg", timedelta(days=2))
    pair = make_pair(name="photos", source_bucket=SOURCE, backup_bucket=BACKUP)
    reconcile_now(pair)
    (entry,) = pair_health()
    assert (entry.facts.lacking.total, entry.facts.unreported) == (1, 0)


# --- One scenario, every surface --------------------------------------------------------------


def figure(html: str, label: str) -> str:
    """The figure of a totals box on a page ("objects lacking", "behind by")."""
    found = re.search(
        rf'<span class="figure[^"]*">([^<]*)</span><span class="label">{label}</span>', html
    )
    assert found, label
    return found.group(1)


def scrape(client) -> dict[tuple[str, str], float]:
    text = client.get("/metrics").content.decode()
    return {
        (sample.name, sample.labels.get("pair", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_surface_shows_the_same_count_and_the_same_behind_by(
    s3, photos, report, client, settings
):
    settings.SITE_URL = "https://backup.example.com"
    AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com", all_pairs=True)

    # A repair first: what it copied is not lacking.
    written(s3, "repaired.jpg", timedelta(hours=3))
    repair = reconcile_now(photos, repair=True)
    assert repair.repaired == 1

    # Open failures outside and inside the grace period.
    old = written(s3, "fail-old.jpg", timedelta(hours=2))
    young = written(s3, "fail-young.jpg", timedelta(minutes=3))
    report(
        result("fail-old.jpg", old, "00B1", "failed"),
        result("fail-young.jpg", young, "00B2", "failed"),
    )
    # Missing (written with no event) and mismatched (copied, then changed in the backup).
    written(s3, "missing.jpg", timedelta(hours=1))
    changed = written(s3, "mismatched.jpg", timedelta(hours=1))
    report(result("mismatched.jpg", changed, "00B3"))
    written(s3, "mismatched.jpg", timedelta(minutes=50), body=b"other", bucket=BACKUP)
    # A failure that a retry of the same event fixes after the run found it missing.
    retried = written(s3, "retried.jpg", timedelta(hours=1))
    failed = result("retried.jpg", retried, "00B4", "failed")
    report(failed)

    run = reconcile_now(photos)
    assert run.missing >= 3 and run.mismatched == 1

    s3.copy_object(
        Bucket=BACKUP, Key="retried.jpg", CopySource={"Bucket": SOURCE, "Key": "retried.jpg"}
    )
    report({**failed, "status": "copied", "error_code": None, "attempt": 2,
            "finished_at": timezone.now().isoformat()})  # fmt: skip
    # An object the run saw in flight, settled missing once its grace had passed (what the
    # settling of in-flight objects writes into its state).
    settled = timezone.now() - timedelta(minutes=20)
    upsert_findings(
        photos.pk,
        run.pk,
        timezone.now(),
        [
            {
                "key": "settled.jpg",
                "finding": Finding.MISSING,
                "source_modified_at": settled,
                "lacking_since": timezone.now(),
            }
        ],
    )
    # A second pair, for the totals.
    docs = make_pair(name="docs", source_bucket="docs-src", backup_bucket="docs-bak")
    report(
        result(
            "d.txt",
            timezone.now() - timedelta(minutes=1),
            "00C1",
            "failed",
            source_bucket="docs-src",
            destination_bucket="docs-bak",
        )
    )

    expected = {"fail-old.jpg", "fail-young.jpg", "missing.jpg", "mismatched.jpg", "settled.jpg"}
    assert lacking_keys(photos) == expected
    assert lacking_keys(docs) == {"d.txt"}

    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    with time_machine.travel(timezone.now(), tick=False):
        now = timezone.now()
        behind = duration(now - old)  # the oldest: the failure two hours ago
        assert behind == "2 h"

        overview = client.get("/").content.decode()
        assert figure(overview, "objects lacking") == "6"
        row = overview[overview.index('href="/pairs/photos/"') :]
        row = row[: row.index("</tr>")]
        assert 'data-label="Objects lacking">5<' in row
        assert f'data-label="Behind by">{behind}<' in row

        page = client.get("/pairs/photos/").content.decode()
        assert figure(page, "objects lacking") == "5"
        assert figure(page, "behind by") == behind
        assert "in sync" not in re.sub(r"<[^>]+>", "", page.split('class="totals"')[0])

        samples = scrape(client)
        assert samples[("backupsite_objects_behind", "photos")] == 5
        assert samples[("backupsite_behind_seconds", "photos")] == (now - old).total_seconds()
        assert samples[("backupsite_objects_behind", "docs")] == 1
        assert figure(overview, "objects lacking") == str(
            int(sum(v for (name, _), v in samples.items() if name == "backupsite_objects_behind"))
        )

        evaluate_health()
        change = HealthChange.objects.get(pair=photos)
        assert change.to_state == State.CRITICAL
        headline = f"5 objects lacking, behind by {behind}: "
        assert change.reason.startswith(headline)
        (alert,) = [m for m in mail.outbox if "photos" in m.subject]
        assert headline in alert.subject and headline in alert.body

        badge = client.get(f"/badge/{photos.badge_token}.svg").content.decode()
        assert f"critical: 5 objects lacking, behind by {behind}" in badge


# --- The rule in SQL and in Python agree ----------------------------------------------------


def test_the_lacking_query_and_the_object_state_rule_agree_on_every_combination(photos):
    import itertools

    etag = "0cc175b9c0f1b6a831c399e269772661"

    from replication.models.events import LACKING_FINDINGS, CopyStatus

    found_at = timezone.now() - timedelta(hours=1)
    before, after = found_at - timedelta(minutes=5), found_at + timedelta(minutes=5)
    rows = []
    combos = itertools.product(
        ["", CopyStatus.COPIED, CopyStatus.FAILED, CopyStatus.DELETED, CopyStatus.SKIPPED],
        ["", *Finding.values],
        [before, after],  # event time
        [before, after],  # finished
    )
    for n, (status, finding, event_time, finished) in enumerate(combos):
        if (not status and not finding) or finished < event_time:
            continue
        if not status and (event_time, finished) != (before, before):
            continue  # a row with no event has no event times: one such row per finding
        event = {
            "event_name": "ObjectCreated:Put",
            "event_time": event_time,
            "sequencer": "0A",
            "sequencer_order": "0A".ljust(32, "0"),
            "status": status,
            "finished_at": finished,
        }
        rows.append(
            ObjectState(
                pair=photos,
                key=f"k{n}",
                **(event if status else {}),
                finding=finding,
                finding_at=found_at if finding else None,
                source_modified_at=before if finding else None,
                **({"kept_etag": etag, "kept_at": found_at} if finding == Finding.KEPT else {}),
            )
        )
    ObjectState.objects.bulk_create(rows)
    expected = {
        row.key
        for row in ObjectState.objects.filter(pair=photos)
        if (row.current == CopyStatus.FAILED) or (row.current in LACKING_FINDINGS)
    }
    assert lacking_keys(photos) == expected
    assert len(expected) > 5

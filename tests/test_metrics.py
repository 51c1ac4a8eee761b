"""/metrics: every documented series, with the right values for a known data set."""

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from replication.ingest import store, views
from replication.ingest.retention import purge_expired_events
from replication.ingest.signing import sign
from replication.models import CopyEvent, Finding, ObjectState, ReconcileRun
from replication.monitoring import metrics
from replication.monitoring.exposition import Family, text
from replication.monitoring.lag import LAG_BUCKETS, bucket_index, cumulative
from tests.factories import event_payload, make_ingest_key, make_pair, record_events

pytestmark = pytest.mark.django_db
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def _fresh_caches():
    views._keys.clear()
    store._pairs.clear()


def scrape(client, **headers) -> dict[tuple, float]:
    """Samples by (name, sorted label items), parsed by prometheus_client's own parser."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def copies(samples, pair: str, status: str) -> float:
    return samples[("backupsite_copies_total", (("pair", pair), ("status", status)))]


def lag_bucket(samples, pair: str, le: str) -> float:
    return samples[("backupsite_copy_lag_seconds_bucket", (("le", le), ("pair", pair)))]


def copy(lag_seconds: float, status: str = "copied", **fields) -> dict:
    finished = fields.pop("finished_at", timezone.now() - timedelta(minutes=5))
    return {
        "status": status,
        "event_time": finished - timedelta(seconds=lag_seconds),
        "started_at": finished - timedelta(seconds=lag_seconds),
        "finished_at": finished,
        **fields,
    }


@pytest.fixture
def known_data():
    """alpha: four copies/deletes with known lags, a skip, two failures older than grace,
    one object found missing, an out-of-sync reconcile. beta: nothing at all."""
    alpha = make_pair(name="alpha", grace_seconds=60)
    make_pair(name="beta")
    record_events(
        alpha,
        copy(0.5),
        copy(3),
        copy(45),
        copy(1.5, "deleted", event_name="ObjectRemoved:Delete"),
        copy(2, "skipped"),
        copy(3600, "failed", error_code="AccessDenied"),
        copy(7200, "failed", error_code="AccessDenied"),
    )
    finished = timezone.now() - timedelta(minutes=2)
    run = ReconcileRun.objects.create(
        pair=alpha,
        status="succeeded",
        verdict="out_of_sync",
        finished_at=finished,
        missing=4,
        mismatched=1,
        extra=2,
        unverified=0,
    )
    ObjectState.objects.create(
        pair=alpha,
        key="lost.jpg",
        finding=Finding.MISSING,
        finding_run=run,
        finding_at=finished,
        lacking_since=finished,
        source_modified_at=finished - timedelta(hours=1),
        finished_at=None,
    )
    return run


def test_copies_are_counted_by_status_for_every_pair(client, known_data):
    samples = scrape(client)
    assert [copies(samples, "alpha", s) for s in ("copied", "deleted", "skipped", "failed")] == [
        3,
        1,
        1,
        2,
    ]
    assert [copies(samples, "beta", s) for s in ("copied", "deleted", "skipped", "failed")] == [
        0,
        0,
        0,
        0,
    ]


def test_lag_histogram_counts_copies_and_deletes_in_cumulative_buckets(client, known_data):
    samples = scrape(client)
    # Lags 0.5 s, 1.5 s (the delete), 3 s and 45 s; skips and failures are not copies.
    assert [lag_bucket(samples, "alpha", le) for le in ("1.0", "2.0", "5.0", "30.0", "60.0")] == [
        1,
        2,
        3,
        3,
        4,
    ]
    assert lag_bucket(samples, "alpha", "+Inf") == 4
    assert samples[("backupsite_copy_lag_seconds_count", (("pair", "alpha"),))] == 4
    assert samples[("backupsite_copy_lag_seconds_sum", (("pair", "alpha"),))] == pytest.approx(50)
    assert lag_bucket(samples, "beta", "+Inf") == 0


def test_failures_behind_and_health_per_pair(client, known_data):
    samples = scrape(client)
    assert samples[("backupsite_open_failures", (("pair", "alpha"),))] == 2
    # Two open failures and one object the reconcile found missing.
    assert samples[("backupsite_objects_behind", (("pair", "alpha"),))] == 3
    assert samples[("backupsite_objects_behind", (("pair", "beta"),))] == 0
    states = {"ok", "warning", "critical", "unknown", "paused"}
    for pair, current in (("alpha", "critical"), ("beta", "unknown")):
        assert {
            state: samples[("backupsite_pair_health", (("pair", pair), ("state", state)))]
            for state in states
        } == {state: 1 if state == current else 0 for state in states}


def test_last_reconcile_counts_verdict_and_time(client, known_data):
    samples = scrape(client)
    kinds = {"missing": 4, "mismatched": 1, "extra": 2, "unverified": 0}
    for kind, n in kinds.items():
        key = ("backupsite_reconcile_last_objects", (("kind", kind), ("pair", "alpha")))
        assert samples[key] == n
    verdicts = {
        v: samples[("backupsite_reconcile_last_verdict", (("pair", "alpha"), ("verdict", v)))]
        for v in ("in_sync", "out_of_sync", "unproven")
    }
    assert verdicts == {"in_sync": 0, "out_of_sync": 1, "unproven": 0}
    assert samples[
        ("backupsite_reconcile_last_timestamp_seconds", (("pair", "alpha"),))
    ] == pytest.approx(known_data.finished_at.timestamp())
    # A pair never reconciled has no reconcile series, rather than made-up zeros.
    assert not [
        key
        for key in samples
        if key[0].startswith("backupsite_reconcile") and ("pair", "beta") in key[1]
    ]


def _post(client, key, payload):
    raw = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    return client.post(
        "/api/v1/events",
        data=raw,
        content_type="application/json",
        headers={
            "X-Backup-Key": key.key_id,
            "X-Backup-Timestamp": timestamp,
            "X-Backup-Signature": sign(key.secret, timestamp, raw),
        },
    )


def test_ingest_requests_are_counted_by_code_and_rejections_by_reason(client, pair):
    key = make_ingest_key()
    unregistered = event_payload(source_bucket="nobody-src")
    assert _post(client, key, {"events": [event_payload(), unregistered]}).status_code == 202
    assert _post(client, key, {"events": [event_payload()]}).status_code == 202
    assert _post(client, key, {"events": "not a list"}).status_code == 400
    refused = client.post("/api/v1/events", data=b"{}", content_type="application/json")
    assert refused.status_code == 401

    samples = scrape(client)
    requests = {
        dict(labels)["code"]: value
        for (name, labels), value in samples.items()
        if name == "backupsite_ingest_requests_total"
    }
    rejections = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "backupsite_ingest_rejections_total"
    }
    assert requests == {"202": 2, "400": 1, "401": 1}
    assert rejections == {"invalid": 1, "unauthenticated": 1, "unregistered_pair": 1}


def test_repeated_events_are_counted_once(client, pair):
    payload = copy(3)
    record_events(pair, payload)
    stored = CopyEvent.objects.get()
    record_events(
        pair,
        {**payload, "key": stored.key, "sequencer": stored.sequencer},
    )
    assert CopyEvent.objects.count() == 1
    assert copies(scrape(client), "photos", "copied") == 1


def test_counters_do_not_go_down_when_retention_purges_events(client, pair, settings):
    settings.EVENT_RETENTION_DAYS = 90
    long_ago = timezone.now() - timedelta(days=100)
    record_events(pair, copy(3, finished_at=long_ago), copy(4, "failed", finished_at=long_ago))
    record_events(pair, copy(1))
    before = scrape(client)

    assert purge_expired_events() == 2
    after = scrape(client)
    assert CopyEvent.objects.count() == 1
    for name, labels in before:
        if name.endswith(("_total", "_bucket", "_count", "_sum")):
            assert after[(name, labels)] >= before[(name, labels)], name
    assert copies(after, "photos", "copied") == 2
    assert copies(after, "photos", "failed") == 1


def test_a_scrape_takes_the_same_number_of_queries_whatever_the_number_of_pairs(client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape(client)
        return len(captured)

    def busy_pair():
        pair = make_pair()
        record_events(pair, copy(2), copy(30, "failed"))
        ReconcileRun.objects.create(
            pair=pair, status="succeeded", verdict="in_sync", finished_at=timezone.now()
        )

    busy_pair()
    one = queries()
    for _ in range(5):
        busy_pair()
    # Health with the rooms' findings, the totals, freshness, protection and drills.
    assert queries() == one <= 13


def test_the_scrape_is_written_byte_for_byte_as_prometheus_client_writes_it():
    # The site writes the text format itself (prometheus_client builds an object per sample
    # and checks every label name of each, too slow for a thousand pairs); it must not
    # differ by a byte.
    for name, lag in (("photos", 2), ("docs", 3000)):
        pair = make_pair(name=name, source_bucket=f"{name}-src", backup_bucket=f"{name}-bak")
        record_events(pair, copy(lag), copy(30, "failed"), copy(1, "deleted"))
        ReconcileRun.objects.create(
            pair=pair, status="succeeded", verdict="in_sync", finished_at=timezone.now()
        )
    awkward = GaugeMetricFamily("backupsite_awkward", 'help with \\ and\na "quote"', labels=["v"])
    awkward.add_metric(['back\\slash "quoted"\nnew line'], 1.5e-7)
    awkward.add_metric(["big"], 12345678912.0, timestamp=1700000000.5)
    stamped = CounterMetricFamily("backupsite_stamped", "a counter created at", labels=["l"])
    stamped.add_metric(["x"], 3, created=1700000000.0)
    odd = Family("histogram", "backupsite_odd", 'a "histogram"', ["pair", "shard"])
    odd.add_metric(['a"b', "7"], [("0.5", 1), ("+Inf", 3)], 4.25)
    counts = Family("gauge", "backupsite_counts", "integers around Go's exponent", ["pair"])
    for n in (0, 7, -3, 999_999, 10**6, 1_234_567, 10**16 + 1, 2**63):
        counts.add_metric([str(n)], n)
    early = Family("histogram", "backupsite_early", "a label sorting before le", ["check"])
    early.add_metric(["c"], [("1.0", 2), ("+Inf", 2)], 1.0)
    collected = [*metrics.collected(), awkward, stamped, odd, counts, early]
    assert any(isinstance(f, Family) for f in collected)

    class Collected:
        def collect(self):
            # What prometheus_client itself builds from the same rows.
            return [f.metric() if isinstance(f, Family) else f for f in collected]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collected())
    assert text(collected) == generate_latest(registry)


# --- Bearer token ---------------------------------------------------------------------------


def test_without_metrics_token_metrics_need_no_login(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic c2NyYXBlLXNlY3JldA==", "scrape-secret", "Bearer "],
)
def test_with_metrics_token_other_credentials_get_401(client, settings, authorization):
    settings.METRICS_TOKEN = "scrape-secret"
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"backupsite_" not in response.content


def test_with_metrics_token_the_bearer_gets_the_metrics(client, settings, pair):
    settings.METRICS_TOKEN = "scrape-secret"
    samples = scrape(client, Authorization="Bearer scrape-secret")
    assert copies(samples, "photos", "copied") == 0


# --- Documentation and buckets --------------------------------------------------------------


def test_every_series_is_documented_in_the_readme(client, known_data):
    documented = set(re.findall(r"`(backupsite_[a-z_]+)`", README.read_text()))
    exposed = {
        family.name
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
    }
    # The parser names counters without "_total"; the README names what Prometheus stores.
    exposed = {
        name + "_total"
        if name
        in {
            "backupsite_copies",
            "backupsite_ingest_requests",
            "backupsite_ingest_rejections",
            "backupsite_guard_lookup_failures",
        }
        else name
        for name in exposed
    }
    assert exposed == documented


@pytest.mark.parametrize(
    ("seconds", "index"), [(0, 0), (1.0, 0), (1.000001, 1), (3600, 11), (3600.5, 12)]
)
def test_a_lag_falls_in_the_first_bucket_whose_bound_is_not_below_it(seconds, index):
    assert bucket_index(seconds) == index


def test_cumulative_buckets_end_with_inf_holding_every_count():
    pairs = cumulative({0: 2, 3: 1, len(LAG_BUCKETS): 4})
    assert pairs[0] == ("1.0", 2)
    assert pairs[3] == ("10.0", 3)
    assert pairs[-1] == ("+Inf", 7)

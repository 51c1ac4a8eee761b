"""Seeding and driving the demo: S3 writes, the real Lambda handler, the real ingest API.

The handler runs in this process with the environment the admin shows for each pair, its
S3 client pointed at the local S3 and its reports posted over HTTP to the running web
server. Failures are S3's own answers (AccessDenied, SlowDown), given by a hook on the
handler's client before the request leaves, exactly as the handler would receive them.
"""

import io
import json
import logging
import os
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.awsrequest import AWSResponse
from django.db import connection
from django.db.models import Count

from replication import deployment, lambda_function
from replication import s3 as s3_clients
from replication.alerts.tasks import evaluate_health
from replication.demo import history, scenario
from replication.demo.scenario import PairPlan
from replication.models import (
    BucketPair,
    CopyEvent,
    IngestKey,
    ReconcileRun,
    RestoreDrill,
    RestorePoint,
)
from replication.protection import guard
from replication.protection import store as protection
from replication.protection.local import protect_bucket
from replication.reconcile import inline
from replication.reconcile import run as reconcile
from replication.restore import drill as drills

log = logging.getLogger(__name__)

HANDLER_BATCH = 100  # records per invocation, as an SQS-fed function receives them
THREADS = 6


class Context:
    """The parts of Lambda's context object the handler reads."""

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class _Body(io.BytesIO):
    def stream(self, **_):
        yield self.getvalue()


class Faults:
    """Answers chosen CopyObject calls with S3's error instead of sending them."""

    def __init__(self, client) -> None:
        self.denied: set[str] = set()
        self.throttled: set[str] = set()
        client.meta.events.register("before-parameter-build.s3.CopyObject", self._note_key)
        client.meta.events.register_first("before-call.s3.CopyObject", self._answer)

    def _note_key(self, params, context, **_):
        source = params.get("CopySource")
        if isinstance(source, dict):
            key = source.get("Key", "")
        else:  # botocore may have encoded it already: "bucket/quoted-key[?versionId=...]"
            key = urllib.parse.unquote(str(source).split("?", 1)[0]).partition("/")[2]
        if key in self.denied:
            context["demo_fault"] = (403, "AccessDenied", "Access Denied")
        elif key in self.throttled:
            context["demo_fault"] = (503, "SlowDown", "Please reduce your request rate.")

    def _answer(self, params, context, **_):
        fault = context.get("demo_fault")
        if fault is None:
            return None
        status, code, message = fault
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        response = AWSResponse(params["url"], status, {}, _Body(body))
        parsed = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return response, parsed


@dataclass
class Function:
    """One deployed replicator: its configuration, as the admin's pair page shows it."""

    config: lambda_function.Config
    client: object

    def invoke(self, event: dict) -> dict:
        try:
            return lambda_function.handle(event, Context(), s3=self.client, config=self.config)
        except lambda_function.ReplicationFailed as failed:
            # Lambda would retry the invocation; the demo leaves the failure on record.
            return {"failed": str(failed)}


class Demo:
    def __init__(
        self, report_url: str, key: IngestKey, say: Callable[[str], None], plans=scenario.PAIRS
    ) -> None:
        self.say = say
        self.plans = tuple(plans)
        # The handler logs a line per record, as it should on Lambda; here it would drown the
        # demo's own summary. Its errors still show.
        logging.getLogger("backupsite.replicator").setLevel(logging.WARNING)
        self.s3 = s3_clients.client()
        # The handler builds its client from the environment, as on Lambda.
        os.environ["AWS_ENDPOINT_URL"] = s3_clients.endpoint_url()
        handler_client = lambda_function.make_s3_client()
        self.faults = Faults(handler_client)
        self.sequencer = scenario.Sequencers()
        self.functions = {}
        for pair in BucketPair.objects.filter(name__in=[p.name for p in self.plans]):
            env = deployment.lambda_environment(pair, report_url, key.key_id)
            env["REPORT_SECRET"] = key.secret
            self.functions[pair.name] = Function(lambda_function.load_config(env), handler_client)

    # --- buckets ------------------------------------------------------------------------

    def fresh_bucket(self, name: str) -> None:
        """Create ``name``, or empty it if a previous demo left it in a running local S3."""
        # Not create-then-catch: in us-east-1, creating a bucket one owns already succeeds.
        existing = {bucket["Name"] for bucket in self.s3.list_buckets().get("Buckets", [])}
        if name not in existing:
            self.s3.create_bucket(Bucket=name)
            return
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})

    def put(self, bucket: str, key: str, version: int = 1, *, event_time=None, body=None) -> dict:
        """Write an object and return the notification record S3 would send for it."""
        body = scenario.body_for(key, version) if body is None else body
        result = self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return scenario.s3_record(
            bucket,
            key,
            etag=result["ETag"],
            size=len(body),
            sequencer=self.sequencer(),
            event_time=event_time or datetime.now(UTC),
        )

    def put_many(self, bucket: str, keys: Iterable[str]) -> list[dict]:
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(lambda key: self.put(bucket, key), keys))

    # --- events -------------------------------------------------------------------------

    def deliver(self, pair: str, records: list[dict]) -> dict:
        """Invoke the pair's function over ``records`` in batches; the summed counts."""
        function = self.functions[pair]
        totals = {"copied": 0, "skipped": 0, "deleted": 0, "failed": 0, "held": 0}
        with ThreadPoolExecutor(THREADS) as pool:
            for result in pool.map(
                lambda batch: function.invoke({"Records": batch}),
                scenario.batches(records, HANDLER_BATCH),
            ):
                for name in totals:
                    value = result.get(name, 0)
                    totals[name] += value if isinstance(value, int) else 0
        return totals

    def redeliver_through_sqs(self, pair: str, records: list[dict], receive_count: int) -> dict:
        """The same S3 events again, as SQS redelivers them (the attempt number grows)."""
        messages = [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "demo",
                "body": json.dumps({"Records": [record]}),
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:demo-events",
            }
            for record in records
        ]
        return self.functions[pair].invoke({"Records": messages})

    # --- the scenario -------------------------------------------------------------------

    def seed(self) -> None:
        plans = self.plans
        started = time.monotonic()
        history.seed_month(self.functions, plans, self.say)  # 30 days behind the live demo
        for plan in plans:
            self.fresh_bucket(plan.source_bucket)
            self.fresh_bucket(plan.backup_bucket)
            protect_bucket(self.s3, plan.source_bucket, versioning=False)
            protect_bucket(self.s3, plan.backup_bucket, versioning=plan.backup_versioned)
        # First, so that they are past the grace period when the reconcile looks.
        for plan in plans:
            self.put_many(plan.source_bucket, plan.unannounced_keys())
        for plan in plans:
            self.seed_pair(plan)
        # The objects written without an event count as missing only once past the grace.
        grace = min(plan.grace_seconds for plan in plans)
        wait = grace + 1 - (time.monotonic() - started)
        if wait > 0:
            self.say(f"waiting {wait:.0f} s for the grace period before reconciling")
            time.sleep(wait)
        for plan in plans:
            self.reconcile(plan.name)
        for plan in plans:
            if plan.overwritten:
                self.overwrite_gone_wrong(plan)
        self.drill([plan.name for plan in plans])
        for plan in plans:
            self.check_protection(plan.name)

    def seed_pair(self, plan: PairPlan) -> None:
        keys = scenario.object_keys(plan)
        denied = {plan.source_prefix + key for key in plan.denied}
        # A throttled burst: consecutive keys, as when a bulk upload meets SlowDown.
        burst = set(keys[len(keys) // 2 : len(keys) // 2 + plan.throttled])
        self.faults.denied |= denied
        self.faults.throttled |= burst
        records = self.put_many(plan.source_bucket, keys)
        self.deliver(plan.name, records)
        line = f"{plan.name}: {len(keys):,} objects"
        if burst:
            # Half of the burst succeeds when SQS hands it back; the rest stays failed.
            retried = [r for r in records if _key(r) in burst][: len(burst) // 2]
            self.faults.throttled -= {_key(r) for r in retried}
            again = self.redeliver_through_sqs(plan.name, retried, receive_count=2)
            line += (
                f", {len(burst)} throttled (SlowDown), {again.get('copied', 0)} of them "
                "copied on SQS's redelivery"
            )
        if denied:
            line += f", {len(denied)} denied (AccessDenied)"
        if plan.unannounced:
            line += f", {plan.unannounced} written without an event"
        if plan.deleted:
            self.delete_some(plan, keys[: plan.deleted])
            line += f", {plan.deleted} deleted (mirrored)"
        if plan.late_and_out_of_order:
            self.late_and_out_of_order(plan)
            line += ", a late event and an out-of-order pair"
        stored = (
            CopyEvent.objects.filter(pair__name=plan.name)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by("status")
        )
        self.say(f"{line}; events stored: " + ", ".join(f"{n:,} {s}" for s, n in stored))

    def delete_some(self, plan: PairPlan, keys: list[str]) -> dict:
        records = []
        for key in keys:
            self.s3.delete_object(Bucket=plan.source_bucket, Key=key)
            record = scenario.s3_record(
                plan.source_bucket,
                key,
                etag="",
                size=0,
                sequencer=self.sequencer(),
                event_time=datetime.now(UTC),
                event_name="ObjectRemoved:Delete",
            )
            del record["s3"]["object"]["eTag"], record["s3"]["object"]["size"]
            records.append(record)
        return self.deliver(plan.name, records)

    def late_and_out_of_order(self, plan: PairPlan) -> None:
        late_key = f"{plan.source_prefix}2026/late/delivered-25-minutes-late.jpg"
        record = self.put(
            plan.source_bucket, late_key, event_time=datetime.now(UTC) - scenario.LATE_BY
        )
        self.deliver(plan.name, [record])
        # Two writes of one key whose events arrive newest first: the older one must lose.
        key = f"{plan.source_prefix}2026/edited/cover.jpg"
        first = self.put(plan.source_bucket, key, version=1)
        second = self.put(plan.source_bucket, key, version=2)
        self.deliver(plan.name, [second])
        self.deliver(plan.name, [first])

    def reconcile(self, pair_name: str) -> ReconcileRun | None:
        pair = BucketPair.objects.get(name=pair_name)
        # The demo's own runs, on its timetable: nobody pressed a button for them.
        run, created = reconcile.request_run(pair, trigger=ReconcileRun.Trigger.SCHEDULED)
        if not created:
            return None
        inline.reconcile_inline(run.pk, processes=1)  # small buckets: forking costs more
        run.refresh_from_db()
        if run.status == ReconcileRun.Status.SUCCEEDED:
            self.say(
                f"{pair_name}: reconcile #{run.pk}: {run.source_objects:,} in the source, "
                f"{run.missing} missing, {run.extra} extra, {run.in_flight} in flight"
            )
        else:
            self.say(f"{pair_name}: reconcile #{run.pk} failed: {run.error}")
        return run

    def overwrite_gone_wrong(self, plan: PairPlan) -> RestorePoint | None:
        """Overwrite some objects with garbage through the real handler, which copies the
        garbage into the backup (too few for the guard), and flag the moment just before as
        a restore point: the pair page offers to restore it from the backup's versions."""
        failed = self.faults.throttled | self.faults.denied
        keys = scenario.overwritten_keys(plan, scenario.object_keys(plan), failed)
        if not keys:
            return None
        started = time.monotonic()
        # S3 stamps versions to the second: the moment restored is a whole second, and the
        # garbage is written from the next one on, so no version of it is stamped "before".
        now = datetime.now(UTC)
        before = now.replace(microsecond=0)
        time.sleep((before + timedelta(seconds=1) - now).total_seconds())
        with ThreadPoolExecutor(THREADS) as pool:
            records = list(
                pool.map(
                    lambda key: self.put(
                        plan.source_bucket,
                        key,
                        body=scenario.garbage(len(scenario.body_for(key)), key),
                    ),
                    keys,
                )
            )
        copied = self.deliver(plan.name, records)["copied"]
        prefix = plan.source_prefix + plan.overwritten_prefix
        point = RestorePoint.objects.create(
            pair=BucketPair.objects.get(name=plan.name),
            at=before,
            prefix=prefix,
            reason=(
                f"{len(keys)} objects under {prefix} were overwritten with garbage, and the "
                f"backup copied the garbage ({copied} copies)"
            ),
        )
        self.say(
            f"{plan.name}: overwrite gone wrong: {len(keys)} objects under {prefix} overwritten "
            f"with garbage, {copied} copied into the backup; the pair page offers to restore "
            f"them as at {before:%H:%M:%S} UTC ({time.monotonic() - started:.1f} s)"
        )
        return point

    def drill(self, pair_names: list[str]) -> None:
        """A restore drill of each pair, run for real against the local S3 as the schedule
        would, the pairs at once (their time is mostly S3's latency)."""
        started = []
        for name in pair_names:
            try:
                started.append(
                    drills.start_drill(
                        BucketPair.objects.get(name=name), trigger=RestoreDrill.Trigger.SCHEDULED
                    )
                )
            except drills.DrillRefused as refused:
                self.say(f"{name}: restore drill not run: {refused}")

        def run(drill: RestoreDrill) -> RestoreDrill:
            try:
                return drills.run_drill(drill.pk)
            finally:
                connection.close()  # this thread's own connection

        with ThreadPoolExecutor(len(started) or 1) as pool:
            for drill in pool.map(run, started):
                name = drill.pair.name
                if drill.status == RestoreDrill.Status.PASSED:
                    self.say(
                        f"{name}: restore drill #{drill.pk} passed: {drill.verified} of "
                        f"{drill.sampled} objects restored, read back and verified in "
                        f"{drill.duration_s:.1f} s"
                    )
                else:
                    self.say(f"{name}: restore drill #{drill.pk} {drill.status}: {drill.error}")

    def check_protection(self, pair_name: str) -> None:
        pair = BucketPair.objects.get(name=pair_name)
        bad = [c for c in protection.run_checks(pair) if c.state.value != "ok"]
        if bad:
            self.say(
                f"{pair_name}: protection: "
                + "; ".join(f"{c.id.value} {c.state.value}: {c.reason}" for c in bad)
            )
        else:
            self.say(f"{pair_name}: protection: every check ok")

    # --- the incident: a mass delete meets the destructive-change guard -------------------

    def mass_delete(
        self, pair_name: str = "demo-logs", burst: int = 510, further: int = 20
    ) -> None:
        """Delete ``burst`` objects of a pair that mirrors deletes through the real handler
        (mirrored, counted by ingest), let the guard trip, then delete ``further``: those
        are held, and the backup keeps them. A visitor releases it on the pair page."""
        plan = next(p for p in self.plans if p.name == pair_name)
        listed = self.s3.list_objects_v2(Bucket=plan.source_bucket, Prefix=plan.source_prefix)
        keys = [item["Key"] for item in listed.get("Contents", [])]
        if len(keys) < burst + further:
            self.say(f"{pair_name}: only {len(keys)} objects, too few for the incident")
            return
        first = self.delete_some(plan, keys[:burst])
        self.say(f"{pair_name}: incident: {burst} objects deleted, {first['deleted']} mirrored")
        held = guard.evaluate()
        if not held:
            self.say(f"{pair_name}: the guard did not trip (is it paused?)")
            return
        self.say(f"{pair_name}: the guard tripped: {held[0].reason}")
        evaluate_health.delay([held[0].pair_id])  # the alert, now rather than in a minute
        # A deployed function sees the hold within 15 s (its cache); this one looks now.
        lambda_function._holds = None
        later = keys[burst : burst + further]
        second = self.delete_some(plan, later)
        kept = sum(1 for key in later if self._in_backup(plan, key))
        self.say(
            f"{pair_name}: {further} more deletes: {second['held']} held, {second['deleted']} "
            f"applied; the backup still has {kept} of them. Release the guard on the pair page."
        )

    def _in_backup(self, plan: PairPlan, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=plan.backup_bucket, Key=key[len(plan.source_prefix) :])
        except Exception:
            return False
        return True

    # --- the running demo ---------------------------------------------------------------

    def trickle(self, step: scenario.TrickleStep) -> None:
        plan = next(p for p in self.plans if p.name == step.pair)
        if step.fail:
            self.faults.throttled.add(step.key)
        self.deliver(plan.name, [self.put(plan.source_bucket, step.key)])


def _key(record: dict) -> str:
    # Records built by scenario.s3_record carry the key form-encoded, as S3 does.
    return urllib.parse.unquote_plus(record["s3"]["object"]["key"])


KEY_NAME = "demo-lambda"


def reset_database(plans=scenario.PAIRS) -> tuple[IngestKey, str]:
    """Start the demo's rows afresh: its pairs (with their events and runs) and ingest key.

    Other pairs and users are left alone. Returns the new ingest key and the demo user's
    new password (a fresh one each run, printed by the command).
    """
    from django.contrib.auth import get_user_model

    BucketPair.objects.filter(name__in=[p.name for p in plans]).delete()
    IngestKey.objects.filter(name=KEY_NAME).delete()
    for plan in plans:
        pair = BucketPair(
            name=plan.name,
            source_bucket=plan.source_bucket,
            source_prefix=plan.source_prefix,
            backup_bucket=plan.backup_bucket,
            mirror_deletes=plan.mirror_deletes,
            grace_seconds=plan.grace_seconds,
            reconcile_every_minutes=plan.reconcile_every_minutes,
        )
        pair.full_clean()
        pair.save()
    key = IngestKey.objects.create(name=KEY_NAME)
    users = get_user_model()
    user = users.objects.filter(username=scenario.DEMO_USER).first() or users(
        username=scenario.DEMO_USER, email="demo@localhost"
    )
    password = secrets.token_urlsafe(9)
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return key, password

"""A month behind the demo: 30 days of backdated copy results, posted through the real
ingest API (signed, as the Lambda posts them), with the reconcile runs and health changes a
site would have recorded over them, so every chart, the freshness figures and last month's
report show something on the first page load.

The story, per pair, decided without I/O by ``plan_history`` (seeded randomness, so every
demo tells it alike):

- a daily rhythm: more copies on weekdays and in the European afternoon, a lag of seconds;
- demo-photos has a bad afternoon twelve days ago: for four hours most copies take 16 to 45
  minutes (a throttled account), which puts its 30-day freshness under the 99.9% target;
- demo-invoices has a weekend of failures (the function lost s3:PutObject on Friday night)
  that Monday morning's reconcile-and-repair finds and copies;
- a scheduled reconcile at 03:00 UTC every day, in sync but for that Monday's run.

The history's objects are not written to the local S3 (a month of them would cost the seed
its minute): only their reports, runs and health are, as if they had since been deleted.
"""

import math
import random
import time as time_module
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from replication import lambda_function
from replication.demo.scenario import PairPlan, Sequencers

DAYS = 30
RUN_HOUR = 3
# Copies per weekday; weekends get a third.
DAILY_COPIES = {"demo-photos": 120, "demo-logs": 120, "demo-invoices": 40}
BAD_AFTERNOON_DAYS_AGO = 12
# Repair Monday morning at 09:00 UTC.
REPAIR_HOUR = 9


@dataclass(frozen=True)
class PastCopy:
    key: str
    event_time: datetime
    finished_at: datetime
    status: str = "copied"
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class PastRun:
    at: datetime
    verdict: str  # "in_sync" or "out_of_sync"
    source_objects: int
    missing: int = 0
    repair: bool = False
    repaired: int = 0


@dataclass(frozen=True)
class PastChange:
    at: datetime
    to_state: str
    reason: str


@dataclass
class History:
    plan: PairPlan
    start: datetime
    copies: list[PastCopy] = field(default_factory=list)
    runs: list[PastRun] = field(default_factory=list)
    changes: list[PastChange] = field(default_factory=list)
    # Keys that failed and that the repair run (the one with repair=True) copied.
    repaired_keys: list[str] = field(default_factory=list)


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(0), tzinfo=UTC)


def _hour_weights() -> list[float]:
    # Quiet at night, busiest around 14:00 UTC.
    return [0.25 + math.exp(-(((h - 14) / 4.5) ** 2)) for h in range(24)]


def last_full_weekend(now: datetime, at_least_days_ago: int = 7) -> datetime:
    """Midnight starting the Saturday of the latest weekend that ended at least
    ``at_least_days_ago`` days before ``now``'s day (so its Monday repair is history too)."""
    day = _midnight(now) - timedelta(days=at_least_days_ago)
    while day.weekday() != 5:  # Saturday
        day -= timedelta(days=1)
    return day


def plan_history(plan: PairPlan, now: datetime, seed: int = 7) -> History:
    """The month before ``now`` for ``plan``: copies, runs and health changes (pure)."""
    rng = random.Random(f"{seed}-{plan.name}")  # noqa: S311 - a demo's story, not a secret
    today = _midnight(now)
    start = today - timedelta(days=DAYS)
    history = History(plan=plan, start=start)
    per_day = DAILY_COPIES.get(plan.name, 50)
    weights = _hour_weights()
    bad_start = today - timedelta(days=BAD_AFTERNOON_DAYS_AGO) + timedelta(hours=13)
    bad_end = bad_start + timedelta(hours=4)
    failing = plan.name == "demo-invoices"
    weekend = last_full_weekend(now)
    outage = (weekend - timedelta(hours=2), weekend + timedelta(days=2))  # Fri 22:00 to Sun
    repair_at = weekend + timedelta(days=2, hours=REPAIR_HOUR)
    failed_keys: list[str] = []
    for n_day in range(DAYS):
        day = start + timedelta(days=n_day)
        count = per_day if day.weekday() < 5 else per_day // 3
        hours = rng.choices(range(24), weights, k=count)
        for i, hour in enumerate(sorted(hours)):
            event_time = day + timedelta(hours=hour, seconds=rng.uniform(0, 3600))
            if event_time >= now - timedelta(hours=1):
                continue  # the live demo fills the last hour
            key = f"{plan.source_prefix}history/{day:%Y-%m-%d}/{i:05d}.bin"
            lag = rng.lognormvariate(1.2, 0.8)  # seconds: mostly 1-10 s
            slow = plan.name == "demo-photos" and bad_start <= event_time < bad_end
            if slow and rng.random() < 0.7:
                lag = rng.uniform(16 * 60, 45 * 60)
            if failing and outage[0] <= event_time < outage[1]:
                failed_keys.append(key)
                history.copies.append(
                    PastCopy(
                        key,
                        event_time,
                        event_time + timedelta(seconds=rng.uniform(0.2, 1.5)),
                        status="failed",
                        error_code="AccessDenied",
                        error_message="Access Denied",
                    )
                )
                continue
            history.copies.append(PastCopy(key, event_time, event_time + timedelta(seconds=lag)))
    history.copies.sort(key=lambda c: c.event_time)

    # Runs: one a day at 03:00, out of sync while the weekend's failures are missing from the
    # backup; the Monday after the outage, a reconcile and repair copies them.
    failure_times = [c.event_time for c in history.copies if c.status == "failed"]
    objects = plan.objects
    for n_day in range(1, DAYS + 1):
        at = start + timedelta(days=n_day, hours=RUN_HOUR)
        if at >= now:
            break
        objects += per_day // 2
        missing = sum(t < at for t in failure_times) if at < repair_at else 0
        history.runs.append(PastRun(at, "out_of_sync" if missing else "in_sync", objects, missing))
        if failing and failure_times and at.date() == repair_at.date():
            missing = len(failure_times)
            history.runs.append(
                # After a repair the verdict is the backup as the repair left it.
                PastRun(repair_at, "in_sync", objects, missing, repair=True, repaired=missing)
            )
    history.repaired_keys = failed_keys if failing else []

    # Health: first evaluated when the month began, then what the story did to it.
    history.changes.append(PastChange(start + timedelta(minutes=1), "ok", "in sync"))
    if plan.name == "demo-photos":
        history.changes += [
            PastChange(
                bad_start + timedelta(minutes=25),
                "warning",
                "p95 lag 31 min > 15 min over the last hour",
            ),
            PastChange(bad_end + timedelta(minutes=50), "ok", "p95 lag 6 s"),
        ]
    if failing and failed_keys:
        first_failure = next(c.event_time for c in history.copies if c.status == "failed")
        history.changes += [
            PastChange(
                first_failure + timedelta(minutes=1),
                "warning",
                f"1 copy failing since {first_failure:%Y-%m-%d %H:%M} UTC, "
                "within the 10 s grace period",
            ),
            PastChange(
                first_failure + timedelta(minutes=2),
                "critical",
                "copies failing with AccessDenied, the oldest since "
                f"{first_failure:%Y-%m-%d %H:%M} UTC (longer than the 10 s grace period)",
            ),
            PastChange(repair_at + timedelta(minutes=4), "ok", "in sync after the repair"),
        ]
    return history


# --- I/O: posting and recording ---------------------------------------------------------------


def seed_month(
    functions: dict, plans, say: Callable[[str], None], now: datetime | None = None
) -> None:
    """Post each plan's month of copy results to the site through the ingest API, and record
    the runs and health changes that go with them. ``functions``: the Demo's deployed
    replicators by pair name (their configuration says where and how to post)."""
    now = now or datetime.now(UTC)
    sequencer = Sequencers(start=int((now - timedelta(days=DAYS + 1)).timestamp() * 1e9))
    for plan in plans:
        started = time_module.monotonic()
        if plan.name not in functions or plan.name not in DAILY_COPIES:
            continue  # a month is told for the demo's own three pairs only
        history = plan_history(plan, now)
        config = functions[plan.name].config
        entries = [_entry(plan, copy, sequencer()) for copy in history.copies]
        sent = lambda_function.send_report(config, entries, remaining_s=lambda: 60.0)
        if not sent:
            say(
                f"{plan.name}: the month's history could not be posted; the demo goes on without it"
            )
            continue
        record_story(history)
        failed = sum(c.status == "failed" for c in history.copies)
        say(
            f"{plan.name}: {DAYS} days of history: {len(entries):,} copy reports"
            + (f" ({failed} failed over a weekend, repaired)" if failed else "")
            + f", {len(history.runs)} reconcile runs, {len(history.changes)} health changes "
            f"({time_module.monotonic() - started:.1f} s)"
        )


def record_story(history: History) -> None:
    """Record what the site would have recorded over the month: the pair's age, its daily
    runs, what the repair established, and its health changes (backdated; one transaction)."""
    from django.db import transaction

    from replication.models import BucketPair, HealthChange, ObjectState, ReconcileRun
    from replication.models.events import Finding

    plan = history.plan
    pair = BucketPair.objects.get(name=plan.name)
    with transaction.atomic():
        BucketPair.objects.filter(pk=pair.pk).update(created_at=history.start - timedelta(hours=1))
        repair_run = None
        for past in history.runs:
            run = ReconcileRun.objects.create(
                pair=pair,
                trigger=ReconcileRun.Trigger.MANUAL
                if past.repair
                else ReconcileRun.Trigger.SCHEDULED,
                repair=past.repair,
                status=ReconcileRun.Status.SUCCEEDED,
                verdict=past.verdict,
                started_at=past.at,
                finished_at=past.at + timedelta(seconds=35),
                heartbeat_at=past.at + timedelta(seconds=35),
                source_objects=past.source_objects,
                destination_objects=past.source_objects - past.missing,
                objects_scanned=2 * past.source_objects - past.missing,
                in_sync=past.source_objects - past.missing,
                missing=past.missing,
                repaired=past.repaired,
                repaired_missing=past.repaired,
                ranges_total=1,
                ranges_done=1,
            )
            ReconcileRun.objects.filter(pk=run.pk).update(created_at=past.at)
            if past.repair:
                repair_run = run
        if repair_run is not None and history.repaired_keys:
            # What the repair established: copied by repair, after the failures.
            ObjectState.objects.filter(pair=pair, key__in=history.repaired_keys).update(
                finding=Finding.REPAIRED,
                finding_run=repair_run,
                finding_at=repair_run.started_at,
            )
        previous = ""
        for sequence, change in enumerate(history.changes, start=1):
            HealthChange.objects.create(
                pair=pair,
                sequence=sequence,
                from_state=previous,
                to_state=change.to_state,
                reason=change.reason,
                reasons=[change.reason],
                at=change.at,
            )
            previous = change.to_state


def _entry(plan: PairPlan, copy: PastCopy, sequencer: str) -> dict:
    def iso(moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return {
        "source_bucket": plan.source_bucket,
        "destination_bucket": plan.backup_bucket,
        "key": copy.key,
        "version_id": None,
        "event_name": "ObjectCreated:Put",
        "event_time": iso(copy.event_time),
        "sequencer": sequencer,
        "size": 1024 + len(copy.key) * 37,
        "etag": uuid.uuid5(uuid.NAMESPACE_URL, copy.key).hex,
        "status": copy.status,
        "error_code": copy.error_code or None,
        "error_message": copy.error_message or None,
        "started_at": iso(copy.event_time + (copy.finished_at - copy.event_time) / 4),
        "finished_at": iso(copy.finished_at),
        "request_id": f"history-{uuid.uuid5(uuid.NAMESPACE_URL, copy.key).hex[:12]}",
        "attempt": 1,
    }

"""The reconcile tasks (run eagerly here), the chord of key ranges, the reaper and the schedule."""

from datetime import timedelta

import pytest
import time_machine
from celery.exceptions import Retry
from django.conf import settings as django_settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from backupsite.celery import app
from replication import tasks
from replication.models import ReconcileRange, ReconcileRun
from replication.reconcile import heartbeat, reaper
from replication.reconcile import run as reconcile
from tests.factories import make_pair

SOURCE, BACKUP = "task-src", "task-bak"


@pytest.fixture
def logs(db, s3):
    """A pair with 12 objects on each side, 2 missing, 1 extra, 1 changed, all old enough."""
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=True):
        for n in range(12):
            s3.put_object(Bucket=SOURCE, Key=f"k{n:02d}", Body=b"same")
            if n not in (3, 7):
                s3.put_object(Bucket=BACKUP, Key=f"k{n:02d}", Body=b"diff" if n == 5 else b"same")
        s3.put_object(Bucket=BACKUP, Key="zz-extra", Body=b"x")
    return make_pair(name="logs", source_bucket=SOURCE, backup_bucket=BACKUP, grace_seconds=60)


def results(run: ReconcileRun) -> tuple:
    return (run.status, run.missing, run.extra, run.mismatched, run.in_sync, run.objects_scanned)


def test_reconcile_pair_runs_a_reconcile_and_returns_its_run(logs):
    run_id = tasks.reconcile_pair.delay(logs.pk, trigger="api").get()
    run = ReconcileRun.objects.get(pk=run_id)
    assert (run.trigger, run.repair) == ("api", False)
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)


def test_reconcile_pair_of_a_deleted_pair_returns_quietly(db):
    assert tasks.reconcile_pair.delay(987654).get() is None


def test_reconcile_pair_while_a_run_is_active_returns_that_run(logs):
    active, _ = reconcile.request_run(logs)
    ReconcileRun.objects.filter(pk=active.pk).update(status="running")
    assert tasks.reconcile_pair.delay(logs.pk).get() == active.pk
    assert ReconcileRun.objects.filter(pair=logs).count() == 1


def test_a_run_delivered_twice_is_reconciled_once(logs):
    run, _ = tasks.start_reconcile(logs, trigger="manual")
    first = results(ReconcileRun.objects.get(pk=run.pk))
    tasks.reconcile_pair.delay(logs.pk, run_id=run.pk).get()
    assert results(ReconcileRun.objects.get(pk=run.pk)) == first
    assert run.discrepancies.count() == 4


def test_a_range_delivered_twice_is_counted_once(logs):
    run, _ = reconcile.request_run(logs)
    reconcile.claim_run(run.pk)
    reconcile.run_range(run.pk, 0)
    reconcile.run_range(run.pk, 0)
    finished = reconcile.finish_run(run.pk)
    assert results(finished) == ("succeeded", 2, 1, 1, 9, 23)
    assert finished.discrepancies.count() == 4


def test_ranges_run_as_a_chord_and_combine_to_the_counts_of_one_range(logs, settings):
    settings.RECONCILE_RANGE_SIZE = 3
    single = ReconcileRun.objects.get(pk=tasks.reconcile_pair.delay(logs.pk).get())
    split = ReconcileRun.objects.get(pk=tasks.reconcile_pair.delay(logs.pk).get())

    assert single.ranges_total == 1
    assert split.ranges_total == 5  # boundaries at every 3rd of 12 source keys
    assert split.ranges.filter(status="succeeded").count() == split.ranges_done == 5
    assert results(split) == results(single)
    assert set(split.discrepancies.values_list("key", "kind")) == set(
        single.discrepancies.values_list("key", "kind")
    )


def test_a_failing_range_fails_the_run_with_the_reason(logs, settings, s3):
    settings.RECONCILE_RANGE_SIZE = 3
    tasks.reconcile_pair.delay(logs.pk).get()
    s3.delete_object(Bucket=BACKUP, Key="zz-extra")
    for n in range(12):
        s3.delete_object(Bucket=BACKUP, Key=f"k{n:02d}")
    s3.delete_bucket(Bucket=BACKUP)

    with pytest.raises(tasks.ReconcileFailed) as failed:
        tasks.reconcile_pair.delay(logs.pk).get()

    run = ReconcileRun.objects.get(pk=failed.value.run_id)
    assert (run.status, run.error) == ("failed", f"backup bucket '{BACKUP}' does not exist")
    assert str(failed.value) == f"reconcile #{run.pk} of logs failed: {run.error}"
    assert not run.ranges.filter(status__in=["queued", "running"]).exists()


# --- The reaper -------------------------------------------------------------------------------


def started_run(pair, *, heartbeat_age: timedelta) -> ReconcileRun:
    run, _ = reconcile.request_run(pair)
    reconcile.claim_run(run.pk)
    ReconcileRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - heartbeat_age)
    return run


def test_reaper_fails_a_run_whose_worker_stopped_reporting(logs):
    run = started_run(logs, heartbeat_age=timedelta(minutes=6))

    assert tasks.reap_stalled_reconciles.delay().get() == [run.pk]

    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error.startswith("the worker stopped reporting (no heartbeat since ")
    assert run.finished_at is not None
    assert not ReconcileRange.objects.filter(run=run, status__in=["queued", "running"]).exists()


def test_reaper_leaves_runs_that_report(logs):
    run = started_run(logs, heartbeat_age=timedelta(seconds=30))
    assert tasks.reap_stalled_reconciles.delay().get() == []
    run.refresh_from_db()
    assert run.status == "running"


def test_reaper_fails_a_run_no_worker_took(logs):
    run, _ = reconcile.request_run(logs)
    ReconcileRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))
    assert reaper.reap_stalled_runs() == [run.pk]
    run.refresh_from_db()
    assert run.error.startswith("no worker started it within 60 minutes")


def test_after_the_reaper_a_rerun_succeeds_and_the_old_delivery_does_nothing(logs):
    dead = started_run(logs, heartbeat_age=timedelta(minutes=10))
    reaper.reap_stalled_runs()

    rerun = ReconcileRun.objects.get(pk=tasks.reconcile_pair.delay(logs.pk).get())
    # Redis redelivers the dead worker's message once its visibility timeout passes.
    tasks.reconcile_range.delay(dead.pk, 0).get()

    assert rerun.pk != dead.pk
    assert results(rerun) == ("succeeded", 2, 1, 1, 9, 23)
    dead.refresh_from_db()
    assert (dead.status, dead.missing) == ("failed", 0)


# --- Scheduling and queueing ------------------------------------------------------------------


def test_dispatcher_starts_scheduled_runs_of_due_pairs_only(logs, s3):
    logs.reconcile_every_minutes = 30
    logs.save()
    s3.create_bucket(Bucket="busy-src")
    s3.create_bucket(Bucket="busy-bak")
    busy = make_pair(source_bucket="busy-src", backup_bucket="busy-bak", reconcile_every_minutes=5)
    active, _ = reconcile.request_run(busy)
    make_pair(reconcile_every_minutes=None)

    started = tasks.dispatch_due_reconciles.delay().get()

    run = ReconcileRun.objects.get(pair=logs)
    assert started == [run.pk]
    assert (run.trigger, run.status) == ("scheduled", "succeeded")
    assert ReconcileRun.objects.filter(pair=busy).get() == active
    # Just ran: not due again at the next tick.
    assert tasks.dispatch_due_reconciles.delay().get() == []


def test_a_broker_outage_saves_the_run_as_failed_instead_of_raising(logs, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.reconcile_pair, "apply_async", refuse)
    run, created = tasks.start_reconcile(logs, trigger="manual")

    assert created
    assert run.status == "failed"
    assert run.error == (
        "the task queue is unavailable, so the run was not queued: "
        "Error 111 connecting to 127.0.0.1:6379. Connection refused."
    )
    assert reconcile.request_run(logs)[1], "a failed enqueue must not block the next run"


def test_start_reconcile_records_the_celery_task_id(logs):
    run, _ = tasks.start_reconcile(logs, trigger="api")
    assert run.celery_task_id
    assert run.status == "succeeded"


def test_beat_runs_dispatcher_and_reaper_every_minute_without_piling_up():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    for name in ("reconcile-due-pairs", "reap-stalled-reconciles"):
        entry = schedule[name]
        assert entry["task"] in app.tasks
        assert entry["schedule"] == 60.0
        assert 0 < entry["options"]["expires"] < entry["schedule"]


def test_a_failed_run_is_logged_as_a_failed_task_and_start_reconcile_returns_it(logs, caplog):
    logs.backup_bucket = "no-such-backup"
    logs.save()

    run, created = tasks.start_reconcile(logs, trigger="manual")

    assert created
    assert (run.status, run.error) == ("failed", "backup bucket 'no-such-backup' does not exist")
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "replication.tasks",
        "WARNING",
        f"reconcile #{run.pk} of logs failed: backup bucket 'no-such-backup' does not exist",
    ) in lines
    # (The health evaluation that follows every run is a task of its own, and does succeed.)
    assert not any("succeeded" in message and "reconcile" in message for _, _, message in lines), (
        lines
    )


# --- Runs whose worker died, with no beat and with a redelivery -------------------------------


def test_asking_for_a_run_reaps_the_pairs_stalled_run_instead_of_returning_it(logs):
    dead = started_run(logs, heartbeat_age=timedelta(minutes=10))

    run, created = tasks.start_reconcile(logs, trigger="manual")

    assert created and run.pk != dead.pk
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)
    dead.refresh_from_db()
    assert dead.status == "failed"
    assert dead.error.startswith("the worker stopped reporting")


def test_asking_for_a_run_leaves_a_run_that_reports(logs):
    alive = started_run(logs, heartbeat_age=timedelta(seconds=30))
    run, created = reconcile.request_run(logs)
    assert (run, created) == (alive, False)
    alive.refresh_from_db()
    assert alive.status == "running"


def died_mid_range(pair, *, silent_for: timedelta) -> ReconcileRun:
    """A one-range run whose worker claimed the range, stored a row, then was killed."""
    run, _ = reconcile.request_run(pair)
    reconcile.claim_run(run.pk)
    key_range = reconcile.claim_range(run.pk, 0)
    run.discrepancies.create(key="k03", kind="missing", range_index=0)
    ReconcileRun.objects.filter(pk=run.pk).update(discrepancies_stored=1)
    ReconcileRange.objects.filter(pk=key_range.pk).update(heartbeat_at=timezone.now() - silent_for)
    return run


def test_a_redelivered_range_whose_worker_went_silent_is_claimed_again_and_finishes_the_run(logs):
    run = died_mid_range(logs, silent_for=timedelta(minutes=6))

    tasks.reconcile_range.delay(run.pk, 0).get()
    tasks.finish_reconcile.delay(run.pk).get()

    run.refresh_from_db()
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)
    assert run.ranges.get().attempt == 2
    # The dead attempt's row was dropped; the new attempt stored each difference once.
    assert run.discrepancies.filter(key="k03").count() == 1
    assert run.discrepancies_stored == run.discrepancies.count() == 4


def test_a_redelivered_range_whose_worker_still_reports_is_left_to_it(logs):
    run = died_mid_range(logs, silent_for=timedelta(seconds=30))

    tasks.reconcile_range.delay(run.pk, 0).get()

    run.refresh_from_db()
    assert run.status == "running"
    assert run.ranges.get().attempt == 1


@pytest.fixture
def retries(monkeypatch):
    """The countdowns of the retries tasks ask for (a worker would publish them)."""
    asked = []

    def retry_of(task):
        def retry(**options):
            asked.append((task.name.rsplit(".", 1)[-1], options["countdown"]))
            return Retry()

        return retry

    for task in (tasks.reconcile_range, tasks.reconcile_pair):
        monkeypatch.setattr(task, "retry", retry_of(task))
    return asked


def test_a_redelivered_range_held_by_a_fresh_heartbeat_looks_again_once_it_would_be_stale(
    logs, retries
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        run = died_mid_range(logs, silent_for=timedelta(seconds=30))
        with pytest.raises(Retry):
            tasks.reconcile_range.run(run.pk, 0)  # as a worker runs it: not eagerly

    # The heartbeat timeout is 300 s: 270 s left, and a second so that it is strictly older.
    assert retries == [("reconcile_range", 271)]
    assert run.ranges.get().attempt == 1
    # The retry, once the worker has been silent for the heartbeat timeout, finishes it.
    with time_machine.travel(start + timedelta(seconds=271), tick=False):
        tasks.reconcile_range.run(run.pk, 0)
        tasks.finish_reconcile.run(run.pk)
    run.refresh_from_db()
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)
    assert run.ranges.get().attempt == 2


def test_a_redelivered_one_range_run_held_by_a_fresh_heartbeat_looks_again_once_stale(
    logs, retries
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        run = died_mid_range(logs, silent_for=timedelta(seconds=100))
        with pytest.raises(Retry):
            tasks.reconcile_pair.run(logs.pk, run_id=run.pk)

    assert retries == [("reconcile_pair", 201)]
    with time_machine.travel(start + timedelta(seconds=201), tick=False):
        tasks.reconcile_pair.run(logs.pk, run_id=run.pk)
    run.refresh_from_db()
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)


def test_the_reaper_leaves_a_run_whose_redelivered_task_waits_to_take_it_over(logs, retries):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        run = died_mid_range(logs, silent_for=timedelta(seconds=30))
        # The dead worker's last heartbeat was the run's as well as the range's.
        last_beat = run.ranges.get().heartbeat_at
        ReconcileRun.objects.filter(pk=run.pk).update(heartbeat_at=last_beat)
        with pytest.raises(Retry):
            tasks.reconcile_pair.run(logs.pk, run_id=run.pk)

    assert retries == [("reconcile_pair", 271)]
    # A reaper tick in the second between the range going stale and the retry: on a clock
    # that kept ticking, the time the test itself took would decide this half second.
    with time_machine.travel(start + timedelta(seconds=270.5), tick=False):
        assert reaper.reap_stalled_runs() == []
    with time_machine.travel(start + timedelta(seconds=271), tick=False):
        tasks.reconcile_pair.run(logs.pk, run_id=run.pk)
    run.refresh_from_db()
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)


def test_a_retry_comes_before_the_run_could_be_reaped_even_right_after_a_heartbeat(logs, retries):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        run = died_mid_range(logs, silent_for=timedelta(seconds=0.5))
        with pytest.raises(Retry):
            tasks.reconcile_range.run(run.pk, 0)
    # The range is stale 299.5 s on, but the run, alive from now, may be reaped at 300 s:
    # the retry comes at 299 s, finds the range still held and looks again.
    with time_machine.travel(start + timedelta(seconds=299), tick=False), pytest.raises(Retry):
        tasks.reconcile_range.run(run.pk, 0)
    assert retries == [("reconcile_range", 299), ("reconcile_range", 2)]
    with time_machine.travel(start + timedelta(seconds=300.5), tick=False):
        assert reaper.reap_stalled_runs() == []
    with time_machine.travel(start + timedelta(seconds=301), tick=False):
        tasks.reconcile_range.run(run.pk, 0)
        tasks.finish_reconcile.run(run.pk)
    run.refresh_from_db()
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)
    assert run.ranges.get().attempt == 2


def test_a_redelivered_range_of_a_finished_or_failed_run_does_not_retry(logs, retries):
    finished, _ = tasks.start_reconcile(logs, trigger="manual")
    tasks.reconcile_range.run(finished.pk, 0)
    failed = died_mid_range(make_pair(name="other"), silent_for=timedelta(seconds=30))
    reaper.fail_run(failed.pk, "the operator stopped it")
    tasks.reconcile_range.run(failed.pk, 0)

    assert retries == []
    assert heartbeat.seconds_until_stale(failed.pk, 0) is None


def test_a_range_taken_over_from_a_silent_worker_keeps_the_reaper_off_its_run(logs):
    run = died_mid_range(logs, silent_for=timedelta(minutes=6))
    ReconcileRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=6)
    )

    reconcile.claim_range(run.pk, 0)  # the redelivered task, before its first heartbeat

    assert reaper.reap_stalled_runs() == []
    run.refresh_from_db()
    assert run.status == "running"


def test_an_attempt_superseded_by_a_redelivery_stops_without_counting(logs, settings):
    settings.RECONCILE_PROGRESS_SECONDS = 0
    run = died_mid_range(logs, silent_for=timedelta(minutes=6))
    old_attempt = ReconcileRange.objects.get(run=run)
    reconcile.claim_range(run.pk, 0)  # the redelivery took over

    with pytest.raises(reconcile.RangeSuperseded):
        heartbeat.Heartbeat(run.pk, key_range=old_attempt).beat(10, force=True)


def test_a_redelivered_one_range_run_whose_worker_went_silent_is_finished(logs):
    run = died_mid_range(logs, silent_for=timedelta(minutes=6))

    tasks.reconcile_pair.delay(logs.pk, run_id=run.pk).get()

    run.refresh_from_db()
    assert results(run) == ("succeeded", 2, 1, 1, 9, 23)


def test_a_run_delivered_twice_while_its_worker_reports_is_left_to_it(logs):
    run = died_mid_range(logs, silent_for=timedelta(seconds=10))

    tasks.reconcile_pair.delay(logs.pk, run_id=run.pk).get()

    run.refresh_from_db()
    assert run.status == "running"


@pytest.fixture
def collector():
    """The garbage collector, put back as it was after the test froze and retuned it."""
    import gc

    thresholds = gc.get_threshold()
    yield gc
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.parametrize("signal", ["worker_process_init", "worker_ready"])
def test_a_worker_keeps_the_collector_off_what_it_loaded_before_reconciling(signal, collector):
    from celery import signals

    getattr(signals, signal).send(sender=None)

    assert collector.get_threshold() == (20_000, 20, 20)
    assert collector.get_freeze_count() > 0


def test_a_development_worker_starts_no_embedded_s3_to_spare_the_collector(
    settings, monkeypatch, collector
):
    from celery import signals

    from replication import s3 as s3_clients

    settings.EMBEDDED_S3 = True
    monkeypatch.setattr(s3_clients, "client", lambda *a: pytest.fail("a client was made"))

    signals.worker_ready.send(sender=None)

    assert collector.get_freeze_count() > 0

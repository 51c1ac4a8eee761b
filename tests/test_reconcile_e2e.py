"""End to end: a real `celery worker` process on Redis reconciles a pair on a moto server.

The worker and the test share the PostgreSQL test database (the test's writes are committed,
``transactional_db``), so these tests need DATABASE_URL pointing at PostgreSQL and
REDIS_URL; without them they are skipped with the reason.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from backupsite.celery import app
from replication import tasks
from replication.models import ReconcileRun
from replication.reconcile import reaper
from replication.reconcile import run as reconcile
from tests.conftest import redis_url_or_skip
from tests.factories import make_pair

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """`celery -A backupsite worker` in its own process group, consuming a queue of its own."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, queue: str | None = None, pool: str = "solo"
    ):
        self.env = env
        self.pool = pool
        self.queue = queue or f"reconcile-e2e-{uuid.uuid4().hex[:8]}"
        self.log = log_dir / f"{self.queue}-{uuid.uuid4().hex[:4]}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Worker":
        command = [sys.executable, "-m", "celery", "-A", "backupsite", "worker"]
        command += ["--pool", self.pool, "--concurrency", "1"]
        command += ["--queues", self.queue, "--hostname", f"{self.queue}@%h", "-l", "WARNING"]
        command += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
        with self.log.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a kill takes all of it
            )
        return self

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would: nothing gets to clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def cold_shutdown(self) -> None:
        """SIGQUIT: Celery stops at once, abandoning its task, and hands it back to Redis."""
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def worker_env(transactional_db, moto_server, tmp_path):
    redis_url = redis_url_or_skip()
    if connection.vendor != "postgresql" or not os.environ.get("DATABASE_URL"):
        pytest.skip(
            "DATABASE_URL does not point at PostgreSQL: the worker process must share "
            "the test database (CI sets it)"
        )
    # pytest-django created test_<name>; the worker must use that database, not <name>.
    database_url = urlsplit(os.environ["DATABASE_URL"])
    database_url = database_url._replace(path="/" + connection.settings_dict["NAME"]).geturl()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "EMBEDDED_S3": "false",
        "RECONCILE_PROGRESS_SECONDS": "1",
        "RECONCILE_RANGE_SIZE": "1000",
    }
    env.pop("AWS_CA_BUNDLE", None)
    app.conf.task_always_eager = False
    workers: list[Worker] = []

    def start_worker(queue: str | None = None, *, pool: str = "solo", **extra_env: str) -> Worker:
        workers.append(Worker({**env, **extra_env}, tmp_path, queue, pool).start())
        return workers[-1]

    yield start_worker
    app.conf.task_always_eager = True
    for worker in workers:
        worker.stop()


def wait_for(predicate, *, timeout: float, worker: Worker, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.output()}")


def started(rows, *, worker: Worker, what: str):
    """The first of ``rows`` (runs or ranges) that ``worker`` has started."""
    return wait_for(
        lambda: rows.filter(status="running").first(),
        timeout=60,
        worker=worker,
        what=f"the worker to start {what}",
    )


def finished(run_id: int, *, worker: Worker, what: str, timeout: float = 60) -> ReconcileRun:
    """The run once it is no longer running."""
    return wait_for(
        lambda: (r := run_state(run_id)).status != "running" and r,
        timeout=timeout,
        worker=worker,
        what=what,
    )


def run_state(run_id: int) -> ReconcileRun:
    return ReconcileRun.objects.get(pk=run_id)


def test_real_worker_reconciles_over_redis_then_splits_the_next_run_into_a_chord(worker_env, fill):
    source = {f"k{n:05d}": b"same" for n in range(2500)}
    backup = {key: body for key, body in source.items() if not key.endswith("7")}  # 250 missing
    backup |= {f"k{n:05d}": b"diff" for n in range(0, 2500, 100)}  # 25 changed
    backup |= {f"zz{n}": b"extra" for n in range(5)}
    fill("e2e-src", source)
    fill("e2e-bak", backup)
    pair = make_pair(source_bucket="e2e-src", backup_bucket="e2e-bak", grace_seconds=0)
    worker = worker_env()

    first_id = tasks.reconcile_pair.apply_async((pair.pk,), queue=worker.queue).get(timeout=60)
    first = run_state(first_id)
    second_id = tasks.reconcile_pair.apply_async((pair.pk,), queue=worker.queue).get(timeout=60)
    # The chord's last task finishes the run after reconcile_pair has returned.
    second = finished(second_id, worker=worker, what="the chord to finish")

    expected = {"status": "succeeded", "missing": 250, "extra": 5, "mismatched": 25}
    expected |= {"source_objects": 2500, "destination_objects": 2255}
    for run in (first, second):
        assert {name: getattr(run, name) for name in expected} == expected, run.error
    assert first.ranges_total == 1
    assert second.ranges_total == 3  # cut at every 1,000th source key of the first run
    assert second.discrepancies.count() == first.discrepancies.count() == 280


def test_worker_killed_mid_run_is_failed_by_the_reaper_and_a_rerun_succeeds(worker_env, fill):
    source = {f"k{n:05d}": b"same" for n in range(4000)}
    fill("kill-src", source)
    fill("kill-bak", {key: body for key, body in source.items() if not key.endswith("1")})
    pair = make_pair(source_bucket="kill-src", backup_bucket="kill-bak", grace_seconds=0)
    doomed = worker_env()

    tasks.reconcile_pair.apply_async((pair.pk,), queue=doomed.queue)
    running = started(ReconcileRun.objects.filter(pair=pair), worker=doomed, what="the run")
    doomed.kill()

    running.refresh_from_db()
    assert running.status == "running", "the run finished before the worker could be killed"
    # Nobody will ever report for it again; once the heartbeat timeout has passed...
    now = timezone.now()
    later = now + timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT + 1)
    reason = "the worker stopped reporting"
    ranges = running.ranges.all()
    if running.ranges_total > 1 and not ranges.filter(status="running").exists():
        # Killed before it took a range: its range tasks still wait in the queue, which is
        # waiting for a worker, so the run is alive until the queued timeout.
        assert reaper.reap_stalled_runs(now=later) == []
        later = now + timedelta(seconds=settings.RECONCILE_QUEUED_TIMEOUT + 1)
        reason = "waited 60 minutes in the queue"
    assert reaper.reap_stalled_runs(now=later) == [running.pk]
    running.refresh_from_db()
    assert running.status == "failed"
    assert reason in running.error

    survivor = worker_env()
    rerun_id = tasks.reconcile_pair.apply_async((pair.pk,), queue=survivor.queue).get(timeout=60)

    rerun = run_state(rerun_id)
    assert rerun.pk != running.pk
    assert (rerun.status, rerun.missing, rerun.source_objects) == ("succeeded", 400, 4000)


# How a worker is lost mid-range, and how its task comes back. The timeouts are short, so
# the drill takes seconds: a range is stale 10 s after its last heartbeat.
# - killed (SIGKILL: out of memory, a lost machine): nothing is handed back; Redis redelivers
#   the unacknowledged task once the visibility timeout (3 s here) has passed;
# - cold shutdown (SIGQUIT, as a deploy that cannot wait does) of a prefork worker, the
#   default pool: it kills its child mid-task and hands the unacknowledged task back to Redis
#   as it stops; the visibility timeout stays at 12 h. (The solo pool cannot do this: Celery
#   raises "does not implement kill_job" inside the task, which fails the run with that.)
# Either way the survivor, started a few seconds later, gets the task while the lost worker's
# heartbeat is still fresh: the case in which a live worker cannot be told from a lost one.
LOST_WORKERS = {
    "killed": (Worker.kill, "solo", {"CELERY_VISIBILITY_TIMEOUT": "3"}),
    "cold shutdown": (Worker.cold_shutdown, "prefork", {}),
}


@pytest.mark.parametrize("how", LOST_WORKERS)
def test_worker_lost_mid_range_has_its_task_redelivered_and_the_run_completes(
    worker_env, fill, how
):
    """acks late: the broker hands the lost worker's task to the next worker, which finds the
    range's heartbeat still fresh, looks again once it is stale, claims the range and
    finishes the run."""
    stop, pool, timeouts = LOST_WORKERS[how]
    source = {f"k{n:05d}": b"same" for n in range(4000)}
    buckets = f"redeliver-{how.replace(' ', '-')}"  # the moto server outlives each test
    fill(f"{buckets}-src", source)
    fill(f"{buckets}-bak", {key: body for key, body in source.items() if not key.endswith("1")})
    pair = make_pair(
        source_bucket=f"{buckets}-src", backup_bucket=f"{buckets}-bak", grace_seconds=0
    )
    timeouts = {**timeouts, "RECONCILE_HEARTBEAT_TIMEOUT": "10"}
    doomed = worker_env(pool=pool, **timeouts)

    run, _ = reconcile.request_run(pair)  # as the admin and the schedule do: the run first
    tasks.reconcile_pair.apply_async((pair.pk,), {"run_id": run.pk}, queue=doomed.queue)
    started(run.ranges.all(), worker=doomed, what="the range")
    stop(doomed)
    running = run_state(run.pk)
    assert running.status == "running", f"the run ended before the worker was lost: {running.error}"

    done, survivor = a_survivor_finishes(worker_env, doomed.queue, running, timeouts)

    assert (done.status, done.missing, done.source_objects) == ("succeeded", 400, 4000), done.error
    assert done.ranges.get().attempt == 2
    assert done.discrepancies.count() == 400
    assert LOOKED_AGAIN in survivor.output()


# What a worker logs when a redelivered task finds its range held by a fresh heartbeat.
LOOKED_AGAIN = "redelivered while another attempt holds it; looking again in"


def a_survivor_finishes(worker_env, queue: str, run: ReconcileRun, timeouts: dict):
    """Start a worker on the lost worker's queue; wait for it to end the run."""
    survivor = worker_env(queue, **timeouts)
    done = finished(
        run.pk, worker=survivor, what="the redelivered tasks to finish the run", timeout=90
    )
    return done, survivor


def test_a_cold_shutdown_mid_chord_has_its_range_retried_and_the_chord_completes(worker_env, fill):
    """A range task of a split run, handed back by a prefork worker's cold shutdown, looks
    again once the range is stale; the chord counts it once and finishes the run."""
    source = {f"k{n:05d}": b"same" for n in range(4000)}
    fill("chord-lost-src", source)
    fill("chord-lost-bak", {key: body for key, body in source.items() if not key.endswith("3")})
    pair = make_pair(
        source_bucket="chord-lost-src", backup_bucket="chord-lost-bak", grace_seconds=0
    )
    timeouts = {"RECONCILE_HEARTBEAT_TIMEOUT": "10"}
    doomed = worker_env(pool="prefork", **timeouts)  # one child: one range at a time
    first_id = tasks.reconcile_pair.apply_async((pair.pk,), queue=doomed.queue).get(timeout=60)
    assert len(run_state(first_id).range_boundaries) == 4  # every 1,000th key: five ranges next

    run, _ = reconcile.request_run(pair)
    tasks.reconcile_pair.apply_async((pair.pk,), {"run_id": run.pk}, queue=doomed.queue)
    lost = started(run.ranges.all(), worker=doomed, what="a range")
    doomed.cold_shutdown()
    assert run_state(run.pk).status == "running", run_state(run.pk).error

    done, survivor = a_survivor_finishes(worker_env, doomed.queue, run, timeouts)

    assert (done.status, done.missing, done.source_objects) == ("succeeded", 400, 4000), done.error
    assert done.ranges_total == 5
    assert done.ranges.get(index=lost.index).attempt == 2
    assert done.discrepancies.count() == 400
    assert LOOKED_AGAIN in survivor.output()

"""Beat's schedule without beat: every periodic job of `make run` and `make demo`.

Without a broker (no REDIS_URL) there is no beat and no worker, yet health must be evaluated
every minute, alerts sent, settled objects settled and old events purged wherever the site
runs. One daemon thread of the command's process runs each entry of
``settings.CELERY_BEAT_SCHEDULE`` on its period, in-process as a worker would (``apply``),
so a job another room adds to the schedule runs locally with no change here.
"""

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from celery.schedules import schedule as interval
from django.conf import settings
from django.db import connections

log = logging.getLogger(__name__)

# The thread wakes at least this often to see whether it was asked to stop.
LONGEST_NAP = 1.0


@dataclass
class Job:
    """One schedule entry: a task run every ``period`` seconds (or when its crontab says)."""

    name: str
    task: str
    args: tuple = ()
    kwargs: dict | None = None
    period: float | None = None  # seconds, for an interval
    crontab: object | None = None  # a celery crontab or solar schedule otherwise
    next_at: float = 0.0  # time.monotonic() of its next run

    @classmethod
    def from_entry(cls, name: str, entry: dict, now: float) -> "Job":
        when = entry["schedule"]
        if isinstance(when, timedelta):
            when = when.total_seconds()
        if isinstance(when, interval):
            when = when.run_every.total_seconds()
        job = cls(name, entry["task"], tuple(entry.get("args", ())), entry.get("kwargs"))
        if isinstance(when, int | float):
            job.period = float(when)
        else:
            job.crontab = when
        # As beat does: the first run comes one period after the start.
        job.next_at = now + job.seconds_to_wait()
        return job

    def seconds_to_wait(self) -> float:
        if self.period is not None:
            return self.period
        # A crontab: how long until it is next due, counted from now.
        remaining = self.crontab.remaining_estimate(self.crontab.now())
        return max(1.0, remaining.total_seconds())


class Scheduler:
    """Runs the jobs of a beat schedule on their periods in a daemon thread.

    Each run happens in its own database connection, closed after it; a job that raises is
    logged and runs again at its next time, never stopping the thread.
    """

    def __init__(
        self,
        schedule: dict | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        entries = settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
        now = clock()
        self.jobs = [Job.from_entry(name, entry, now) for name, entry in entries.items()]
        self.runs = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Scheduler":
        self._thread = threading.Thread(target=self._loop, name="local-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "Scheduler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> str:
        parts = []
        for job in self.jobs:
            every = f"every {_seconds(job.period)}" if job.period is not None else "on its crontab"
            parts.append(f"{job.name} ({every})")
        return ", ".join(parts)

    def run_due(self) -> int:
        """Run every job whose time has come; how many ran. One pass of the thread's loop."""
        ran = 0
        for job in self.jobs:
            if self._stop.is_set():
                break
            if self.clock() >= job.next_at:
                self.run(job)
                job.next_at = self.clock() + job.seconds_to_wait()
                ran += 1
        return ran

    def run(self, job: Job) -> bool:
        """Run one job now, in-process; False (and a log line) if it failed."""
        self.runs += 1
        try:
            task = _task_named(job.task)
            task.apply(args=job.args, kwargs=job.kwargs or {}, throw=True)
            return True
        except Exception:
            self.failures += 1
            log.exception("scheduled job %s (%s) failed; it runs again on time", job.name, job.task)
            return False
        finally:
            if threading.current_thread() is self._thread:
                # The thread's connection is never left open between runs: a restarted
                # database would otherwise break every later run.
                connections.close_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # the loop itself must outlive anything a job does
                log.exception("the local scheduler's loop failed; it goes on")
            if not self.jobs:
                self._stop.wait(LONGEST_NAP)
                continue
            wait = min(job.next_at for job in self.jobs) - self.clock()
            self._stop.wait(min(LONGEST_NAP, max(0.05, wait)))


@contextlib.contextmanager
def local_scheduler(say: Callable[[str], None]) -> Iterator[Scheduler | None]:
    """The periodic jobs for as long as a local command runs, unless beat is the one to run
    them (a broker is configured): then it says so and runs nothing."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        say("REDIS_URL is set: periodic jobs run from beat (`make worker` and `make beat`).")
        yield None
        return
    # A line per job per minute ("Task ... succeeded") would drown the terminal; a job that
    # fails is still logged, by Celery and by the scheduler.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    with Scheduler() as scheduler:
        say(f"Periodic jobs run in this process: {scheduler.describe()}.")
        yield scheduler


def _task_named(name: str):
    if name not in current_app.tasks:
        # A worker imports every app's tasks module at start; this process may not have yet.
        current_app.loader.import_default_modules()
        importlib.import_module(name.rpartition(".")[0])
    return current_app.tasks[name]


def _seconds(value: float) -> str:
    if value >= 3600 and value % 3600 == 0:
        return f"{value / 3600:.0f} h"
    if value >= 60 and value % 60 == 0:
        return f"{value / 60:.0f} min"
    return f"{value:g} s"

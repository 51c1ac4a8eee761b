"""Helpers shared by the reconcile tests that run against moto (and LocalStack)."""

import time
from contextlib import contextmanager
from datetime import timedelta

import time_machine
from django.utils import timezone

from replication.models import BucketPair, ObjectState, ReconcileRun
from replication.models.events import CopyStatus
from replication.reconcile import inline
from replication.reconcile import run as reconcile
from tests import s3_backends
from tests.factories import make_pair

# An S3 in another process (LocalStack) stamps objects with the machine's clock, which
# time_machine cannot move: there the grace period is this short and really waited out.
# LastModified is in whole seconds, so an object written just before a run starts still looks
# young while the run starts less than GRACE_OUTSIDE - 1 seconds after the write.
GRACE_OUTSIDE = 3


def s3_keeps_its_own_clock() -> bool:
    return s3_backends.serving_its_own_clock()


def prefixed_pair(source: str, backup: str, source_prefix: str, backup_prefix: str) -> BucketPair:
    """The pair ``docs``: a prefix on each side and a 10-minute grace period (GRACE_OUTSIDE
    seconds with an S3 that keeps its own clock)."""
    return make_pair(
        name="docs",
        source_bucket=source,
        source_prefix=source_prefix,
        backup_bucket=backup,
        backup_prefix=backup_prefix,
        grace_seconds=GRACE_OUTSIDE if s3_keeps_its_own_clock() else 600,
    )


def an_hour_ago():
    """Objects written inside this block are older than the pair's grace period."""
    if s3_keeps_its_own_clock():
        return _grace_waited_out()
    return time_machine.travel(timezone.now() - timedelta(hours=1), tick=True)


@contextmanager
def _grace_waited_out():
    yield
    time.sleep(GRACE_OUTSIDE + 1)


def reconcile_now(pair, **options) -> ReconcileRun:
    """A new run of ``pair``, carried out in this process; ``boundaries`` cuts its ranges."""
    boundaries = options.pop("boundaries", None)
    run, created = reconcile.request_run(pair, **options)
    assert created
    inline.reconcile_inline(run.pk, boundaries=boundaries)
    run.refresh_from_db()
    return run


def found(run: ReconcileRun) -> dict[str, set[str]]:
    """Each kind's keys, relative to the source prefix (rows store the full source key)."""
    prefix = run.pair.source_prefix
    kinds: dict[str, set[str]] = {}
    for d in run.discrepancies.all():
        assert d.key.startswith(prefix)
        kinds.setdefault(d.kind, set()).add(d.key.removeprefix(prefix))
    return kinds


def failed_copy(pair, key: str, when) -> ObjectState:
    """An object state as ingest leaves it after a failed copy reported at ``when``; ``key``
    relative to the source prefix."""
    return ObjectState.objects.create(
        pair=pair,
        key=pair.source_prefix + key,
        event_name="ObjectCreated:Put",
        event_time=when,
        sequencer="0A",
        sequencer_order="0A".ljust(32, "0"),
        status=CopyStatus.FAILED,
        error_code="AccessDenied",
        finished_at=when,
    )

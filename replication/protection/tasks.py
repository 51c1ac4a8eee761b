"""Celery tasks of protection: thin, by primary key (re-exported by replication.tasks)."""

import logging

from celery import shared_task

from replication.alerts.tasks import evaluate_health
from replication.models import BucketPair
from replication.protection import guard, store

log = logging.getLogger(__name__)

# Beat runs every pair's checks hourly; a pair's task not started within this is dropped,
# as the next hour's brings the same news.
CHECK_EXPIRES_SECONDS = 3300


@shared_task(ignore_result=True)
def check_protection(pair_id: int) -> None:
    """Run one pair's protection checks and keep the results."""
    pair = BucketPair.objects.filter(id=pair_id).first()
    if pair is None:
        return
    store.run_checks(pair)
    evaluate_after_checks(pair_id)


def evaluate_after_checks(pair_id: int) -> None:
    """A changed check alerts now, not at the next minute's evaluation."""
    try:
        evaluate_health.delay([pair_id])
    except Exception:  # the results are kept whatever happens here; beat evaluates each minute
        log.exception("pair %s: could not evaluate its health after the protection checks", pair_id)


@shared_task(ignore_result=True)
def check_all_protection() -> int:
    """Beat, hourly: queue the checks of every enabled pair; returns how many."""
    ids = list(BucketPair.objects.filter(enabled=True).values_list("id", flat=True))
    for pair_id in ids:
        check_protection.apply_async(args=(pair_id,), expires=CHECK_EXPIRES_SECONDS)
    return len(ids)


@shared_task(ignore_result=True)
def evaluate_guards() -> int:
    """Beat, every minute: trip the guard of each pair whose last five minutes say so."""
    held = guard.evaluate()
    if held:
        try:
            evaluate_health.delay([hold.pair_id for hold in held])  # alert now
        except Exception:
            log.exception("could not evaluate health after tripping %s guard(s)", len(held))
    return len(held)


@shared_task(ignore_result=True)
def recompute_guard_usual() -> int:
    """Beat, hourly: each pair's usual 5-minute count of destructive changes."""
    return guard.recompute_usual()

"""End to end: a real `celery worker` on Redis restores from a moto server and is killed
(SIGKILL) in the middle; the job is taken over and every object is restored exactly once.

The worker shares the PostgreSQL test database and needs REDIS_URL (tests/test_reconcile_e2e.py
says how); without them the test is skipped with the reason, and with CI=true that fails.
"""

from collections import Counter

import boto3
import pytest
from django.utils import timezone

from replication import tasks
from replication.models import RestoredObject, RestoreJob
from replication.restore import job as restores
from tests.factories import make_pair
from tests.test_reconcile_e2e import wait_for, worker_env  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

OBJECTS = 2000
BACKUP = "killed-restore-bak"
TARGET = "killed-restore-to"
# The lost worker's task comes back from Redis after 3 s; its heartbeat is stale after 10 s.
TIMEOUTS = {
    "CELERY_VISIBILITY_TIMEOUT": "3",
    "RECONCILE_HEARTBEAT_TIMEOUT": "10",
    "RESTORE_THREADS": "4",
}


@pytest.fixture
def backup(moto_server):
    """A versioned backup of OBJECTS keys, each written twice, and a versioned target: each
    write into the target is a version of its own, so the versions count the copies."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    moto = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for bucket in (BACKUP, TARGET):
        moto.create_bucket(bucket, "us-east-1")
        moto.put_bucket_versioning(bucket, "Enabled")
    for body in (b"old", b"restored"):
        for n in range(OBJECTS):
            moto.put_object(BACKUP, f"k/{n:05d}", body)
    return boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def copies_per_key(s3) -> Counter:
    written = Counter()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=TARGET):
        written.update(version["Key"] for version in page.get("Versions", ()))
    return written


def test_a_worker_killed_mid_restore_is_taken_over_and_restores_every_object_exactly_once(
    worker_env,  # noqa: F811
    backup,
):
    pair = make_pair(source_bucket="killed-restore-src", backup_bucket=BACKUP)
    request = restores.make_request(pair, at=timezone.now(), to=TARGET)
    job = restores.create_job(request, restores.count_plan(backup, request))
    doomed = worker_env(**TIMEOUTS)

    tasks.restore_job.apply_async((job.pk,), queue=doomed.queue)
    wait_for(
        lambda: RestoreJob.objects.filter(pk=job.pk, restored__gte=100).exists(),
        timeout=120,
        worker=doomed,
        what="the first copies",
    )
    doomed.kill()
    job.refresh_from_db()
    assert job.status == "running" and job.restored < OBJECTS, "it ended before the kill"

    # Redis hands the unacknowledged task to the next worker, which takes the job over once
    # the dead worker's heartbeat is stale (looking again until then, if it is still fresh:
    # how long the new worker takes to start decides which).
    survivor = worker_env(doomed.queue, **TIMEOUTS)
    done = wait_for(
        lambda: (j := RestoreJob.objects.get(pk=job.pk)).status != "running" and j,
        timeout=180,
        worker=survivor,
        what="the redelivered task to finish the restore",
    )

    assert done.status == "succeeded", done.error
    assert (done.attempt, done.restored, done.failed) == (2, OBJECTS, 0)
    outcomes = done.outcomes.values_list("outcome", flat=True)
    assert Counter(outcomes) == {RestoredObject.Outcome.RESTORED: OBJECTS}
    assert copies_per_key(backup) == {f"k/{n:05d}": 1 for n in range(OBJECTS)}

"""Where a restore into the source meets the destructive-change guard.

A restore into the source is the recovery from what the guard caught, so it must run while
the guard holds: starting one releases the pair's hold as "keep the backup as it is"
(audited), and its own writes (key and ETag) are never counted toward the guard. The guard
lives in replication/protection/ (built alongside this room); until it is wired in, this
hook only logs, and a restore into the source neither releases a hold nor marks its writes.
"""

import logging

log = logging.getLogger(__name__)


def release_for_restore(job) -> None:
    """HOOK for the guard: release ``job.pair``'s hold as "keep the backup as it is" and
    register the job's writes as its own. Called once, when a restore into the source is
    created. Not wired to the guard yet (see the module's docstring)."""
    log.info(
        "restore #%s writes into the source of %s: no guard is wired in to release",
        job.pk,
        job.pair.name,
    )

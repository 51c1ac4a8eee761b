"""Where a restore into the source meets the destructive-change guard.

A restore into the source is the recovery from what the guard caught, so it must run while
the guard holds: starting one releases the pair's hold as "keep the backup as it is"
(audited, by the person who asked for the restore). Its own writes (key and ETag), when the
Lambda copies them back into the backup, are neither counted toward the guard nor held by it
(replication/restore/writes.py).
"""

import logging

from replication.protection import guard

log = logging.getLogger(__name__)


def release_for_restore(job) -> None:
    """Release ``job.pair``'s open hold, if any, as "keep the backup as it is"; called once,
    when a restore into the source is created."""
    hold = guard.release(job.pair, job.requested_by, "keep")
    if hold is not None:
        log.info("restore #%s released the guard's hold on %s (keep)", job.pk, job.pair.name)

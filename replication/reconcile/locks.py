"""One lock order for a run and its ranges, and deadlocks retried. ORM edge.

Every transaction that writes both a run row and its range rows locks the run first, then
the ranges: claiming a range, recording it done, failing a run. Two transactions taking the
same rows in the same order wait for each other instead of deadlocking. A deadlock can still
come from elsewhere (rows of other tables, a database's own choices); PostgreSQL then aborts
one transaction, which is retried here rather than left to fail the run, or to the reaper
with a misleading reason.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")

_ATTEMPTS = 4
# PostgreSQL's SQLSTATE for "deadlock detected".
_DEADLOCK = "40P01"


def is_deadlock(error: BaseException) -> bool:
    cause = error.__cause__
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code == _DEADLOCK or "deadlock detected" in str(error)


def retrying_deadlocks(work: Callable[[], T], *, what: str) -> T:
    """``work()`` (one transaction), run again after a deadlock, a few times, with a short
    pause that grows; any other error, or a deadlock that keeps coming, is raised."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as error:
            if attempt == _ATTEMPTS or not is_deadlock(error):
                raise
            log.warning("%s: deadlock detected, attempt %s of %s", what, attempt, _ATTEMPTS)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")

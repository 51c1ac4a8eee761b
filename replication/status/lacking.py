"""What the backup lacks, summed up for one pair (pure: no Django, no I/O).

One definition, read by every page, /metrics, alerts and badges: the source keys whose
newest known state is a failed copy (an open failure), or missing or mismatched in a
reconcile, or in flight that settled missing, with nothing newer that resolved it. The rule
that decides it object by object is ``ObjectState.objects.lacking()``
(replication/models/events.py); facts.py counts its rows per pair into a ``Lacking``.

Resolved by: a successful copy of the same key with a greater sequencer, or with the same
sequencer that finished later (a retry of the same event); for a reconcile's finding, a copy
that finished after the run listed the key; or a later reconcile or repair that found it in
sync. Held changes and kept keys are not lacking.

"Objects lacking" is ``total``; "behind by" is the age of the oldest member, counted from
``since``: the event that should have copied it, or the source object's LastModified when
no event announced it. Reasons that say "since" name the same instant.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Lacking:
    """The objects a pair's backup lacks, by what established it."""

    total: int = 0
    failed: int = 0  # open failures: copies that failed, nothing newer since
    missing: int = 0  # found missing by a reconcile, or by the settling of in-flight objects
    mismatched: int = 0  # found different by a reconcile
    since: datetime | None = None  # when the oldest of them began to be lacking

    def behind_by(self, now: datetime) -> timedelta | None:
        """How far behind the backup is: the age of the oldest object it lacks; None when it
        lacks nothing."""
        if not self.total or self.since is None:
            return None
        return max(now - self.since, timedelta(0))

    def kinds(self) -> str:
        """What they are, in words: "9 missing, 2 mismatched, 3 failed copies"."""
        parts = []
        if self.missing:
            parts.append(f"{self.missing} missing")
        if self.mismatched:
            parts.append(f"{self.mismatched} mismatched")
        if self.failed:
            parts.append(f"{self.failed} failed {'copy' if self.failed == 1 else 'copies'}")
        return ", ".join(parts)


NOTHING = Lacking()

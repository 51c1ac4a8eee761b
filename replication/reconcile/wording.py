"""How a run's outcome reads to people, in messages, the command and the admin. Pure.

The verdict comes first, then the counts that explain it: "Run #12 of photos finished: out
of sync, 2 missing, 1 mismatched". A run's ``status`` is never the headline ("is
succeeded" says nothing about the backup).
"""

VERDICT_LABELS = {"in_sync": "in sync", "out_of_sync": "out of sync", "unproven": "unproven"}
# The counts worth naming, in the order people read them.
_COUNTS = [
    ("missing", "missing"),
    ("mismatched", "mismatched"),
    ("extra", "extra"),
    ("unverified", "unverified"),
    ("in_flight", "in flight"),
]


def outcome(run) -> str:
    """One line: what became of ``run`` (a ReconcileRun, or anything with its fields)."""
    head = f"Run #{run.pk} of {run.pair.name}"
    if run.status == "failed":
        return f"{head} failed: {one_line(run.error) or 'no reason recorded'}"
    if run.status != "succeeded":
        return f"{head} {run.status}"
    parts = [VERDICT_LABELS.get(run.verdict, run.verdict)]
    parts += [f"{getattr(run, name):,} {label}" for name, label in _COUNTS if getattr(run, name)]
    if run.repair:
        parts.append(f"{run.repaired:,} repaired")
        if run.repair_failed:
            parts.append(f"{run.repair_failed:,} repair failed")
    return f"{head} finished: {', '.join(parts)}"


def one_line(text: str) -> str:
    """``text`` on one line: an error shown where exactly one line is promised."""
    return " ".join(text.split())

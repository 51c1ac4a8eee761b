"""How a run's outcome reads to people, in messages, the command, the admin and pages. Pure.

The verdict comes first, then the counts that explain it: "Run #12 of photos finished: out
of sync, 2 missing, 1 mismatched". A run's ``status`` is never the headline ("is
succeeded" says nothing about the backup). Objects in flight stand beside the verdict
wherever it is: "in sync · 12 in flight", and so do keys kept at a guard release ("keep the
backup as it is"), which are neither missing, mismatched nor extra: "in sync · 5 kept".
After a repair the verdict describes the backup as the repair left it, so the line says
what was found and what was repaired, never a bare "in sync" beside "52 missing": "in sync
after repair: 52 missing and 6 mismatched copied; 1 extra kept".
"""

VERDICT_LABELS = {"in_sync": "in sync", "out_of_sync": "out of sync", "unproven": "unproven"}
# The counts worth naming, in the order people read them (in flight goes after a "·").
_COUNTS = [
    ("missing", "missing"),
    ("mismatched", "mismatched"),
    ("extra", "extra"),
    ("unverified", "unverified"),
]
_COPIED = ("missing", "mismatched")


def outcome(run) -> str:
    """One line: what became of ``run`` (a ReconcileRun, or anything with its fields)."""
    head = f"Run #{run.pk} of {run.pair.name}"
    if run.status == "failed":
        return f"{head} failed: {one_line(run.error) or 'no reason recorded'}"
    if run.status != "succeeded":
        return f"{head} {run.status}"
    return f"{head} finished: {verdict_line(run)}"


def verdict_label(run) -> str:
    """The verdict as the badge says it: "in sync", or "in sync after repair"."""
    label = VERDICT_LABELS.get(run.verdict, run.verdict)
    return f"{label} after repair" if run.repair else label


def verdict_detail(run) -> str:
    """What pages show beside the badge (the counts have their own cells there): after a
    repair, what it found and did; then the objects in flight. "" when there is nothing.

    "52 missing and 6 mismatched copied; 1 extra kept · 12 in flight", "12 in flight".
    """
    parts = [repair_summary(run)] if run.repair else []
    parts += _beside(run)
    return " · ".join(parts)


def _beside(run) -> list[str]:
    """What stands beside the verdict without deciding it: keys kept at a guard release,
    and objects in flight."""
    parts = []
    kept = getattr(run, "kept", 0)
    if kept:
        parts.append(f"{kept:,} kept")
    if run.in_flight:
        parts.append(f"{run.in_flight:,} in flight")
    return parts


def verdict_line(run) -> str:
    """The verdict with everything that explains it, as one line of text:
    "out of sync, 2 missing, 1 mismatched · 3 in flight"; "in sync · 5 kept · 12 in flight";
    "in sync after repair: 52 missing and 6 mismatched copied; 1 extra kept"."""
    text = verdict_label(run)
    if run.repair:
        text += f": {repair_summary(run)}"
    else:
        counts = [
            f"{getattr(run, name):,} {label}" for name, label in _COUNTS if getattr(run, name)
        ]
        if counts:
            text += ", " + ", ".join(counts)
    for part in _beside(run):
        text += f" · {part}"
    return text


def repair_summary(run) -> str:
    """What a repair found and what it did: "52 missing and 6 mismatched copied; 1 extra
    kept", "3 missing found: 2 copied, 1 failed", "nothing to copy"."""
    found = {kind: getattr(run, kind) for kind in _COPIED if getattr(run, kind)}
    copied = sum(getattr(run, f"repaired_{kind}", 0) for kind in found)
    failed = run.repair_failed
    what = " and ".join(f"{n:,} {kind}" for kind, n in found.items())
    parts = []
    if not found:
        parts.append("nothing to copy")
    elif copied == sum(found.values()):
        parts.append(f"{what} copied")
    else:
        done = [f"{copied:,} copied"]
        if failed:
            done.append(f"{failed:,} failed")
        left = sum(found.values()) - copied - failed
        if left > 0:
            done.append(f"{left:,} not copied")
        parts.append(f"{what} found: {', '.join(done)}")
    deleted = getattr(run, "extras_deleted", 0)
    if deleted:
        parts.append(f"{deleted:,} extra deleted")
    if run.extra - deleted > 0:
        parts.append(f"{run.extra - deleted:,} extra kept")
    if run.unverified:
        parts.append(f"{run.unverified:,} unverified")
    return "; ".join(parts)


def one_line(text: str) -> str:
    """``text`` on one line: an error shown where exactly one line is promised."""
    return " ".join(text.split())

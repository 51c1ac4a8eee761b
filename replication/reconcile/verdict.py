"""A finished run's verdict from its counts. Pure: no Django, no I/O.

``status`` says whether a run worked; the verdict says what it found, and is what people
read first. Extras are allowed in a backup that keeps what the source deleted, and count
against one that mirrors deletes.
"""

IN_SYNC = "in_sync"
OUT_OF_SYNC = "out_of_sync"
UNPROVEN = "unproven"


def verdict(
    *,
    missing: int,
    mismatched: int,
    extra: int,
    unverified: int,
    mirror_deletes: bool,
    source_objects: int | None = None,
    destination_objects: int = 0,
) -> str:
    """``out_of_sync`` if anything is missing or mismatched (or extra on a mirroring pair),
    else ``unproven`` if unverified objects stand in the way, else ``in_sync``.

    An empty source listing beside a backup that holds objects is ``unproven`` before the
    extras rule: a wrong bucket or prefix lists nothing, and must never read "in sync".

    In-flight objects are young enough that the copy may simply not have happened yet: they
    never decide the verdict.
    """
    if source_objects == 0 and destination_objects:
        return UNPROVEN
    if missing or mismatched or (extra and mirror_deletes):
        return OUT_OF_SYNC
    if unverified:
        return UNPROVEN
    return IN_SYNC

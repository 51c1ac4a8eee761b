"""What the protection checks add to a pair's health: pure findings, and one query for many.

The health rules (owned elsewhere) take these as they are: a critical check makes the pair
critical; a warning or a check that could not be read (``unknown``) makes it a warning.
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from replication.models import BucketPair, GuardHold, ProtectionCheck, ProtectionResult

# Hourly checks: results older than this mean the checks stopped running.
STALE_AFTER = timedelta(hours=3)

_SEVERITY = {"critical": "critical", "warning": "warning", "unknown": "warning"}
_LABELS = dict(ProtectionCheck.choices)


def findings(
    results: Iterable[tuple[str, str, str]], checked_at: datetime | None, now: datetime
) -> list[tuple[str, str]]:
    """(severity, reason) for each check that is not ok, critical first.

    ``results`` are (check id, state, reason) of the latest run, ``checked_at`` when it ran.
    """
    found = []
    for check_id, state, reason in results:
        severity = _SEVERITY.get(state)
        if severity is None:
            continue
        found.append((severity, f"protection: {_LABELS.get(check_id, check_id)}: {reason}"))
    if checked_at is not None and now - checked_at > STALE_AFTER:
        hours = int((now - checked_at).total_seconds() // 3600)
        at = checked_at.astimezone(UTC)
        found.append(
            ("warning", f"protection checks last ran {hours} h ago ({at:%Y-%m-%d %H:%M} UTC)")
        )
    found.sort(key=lambda f: 0 if f[0] == "critical" else 1)
    return found


def health_findings(pairs: Iterable[BucketPair], now: datetime) -> dict[int, list[tuple[str, str]]]:
    """Findings by pair id for the pairs that have any (two queries, by the latest-check
    and open-hold indexes).

    A pair never checked has none: a new pair is not a warning before its first hourly run.
    A pair whose destructive-change guard holds is critical with the hold's reason (a
    second query).
    """
    pair_ids = [pair.pk for pair in pairs]
    by_pair: dict[int, list[tuple[str, str, str]]] = {}
    checked: dict[int, datetime] = {}
    rows = ProtectionResult.objects.filter(pair_id__any=pair_ids, is_latest=True).values_list(
        "pair_id", "check_id", "state", "reason", "checked_at"
    )
    for pair_id, check_id, state, reason, checked_at in rows:
        by_pair.setdefault(pair_id, []).append((check_id, state, reason))
        # The oldest of the latest results: a check that stopped being refreshed shows.
        checked[pair_id] = min(checked.get(pair_id, checked_at), checked_at)
    result = {}
    for pair_id, results in by_pair.items():
        found = findings(results, checked[pair_id], now)
        if found:
            result[pair_id] = found
    holds = GuardHold.objects.filter(pair_id__any=pair_ids, released_at__isnull=True)
    for pair_id, since, reason in holds.values_list("pair_id", "since", "reason"):
        result.setdefault(pair_id, []).insert(0, ("critical", hold_reason(since, reason)))
    return result


def hold_reason(since: datetime, reason: str) -> str:
    at = since.astimezone(UTC)
    return (
        f"destructive-change guard holds since {at:%Y-%m-%d %H:%M} UTC: {reason}; "
        "release it on the pair page"
    )

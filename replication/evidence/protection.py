"""Protection checks over one month, from their stored results (pure: no Django).

A check's state holds from one result until the next, so the month of a check is the state
in force at its start, the results that changed it, and how long each state lasted. Time
before a check's first result, or before the pair existed, is "not checked": it counts
against the share of time ok.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from replication.protection.rules import CheckId, CheckState

NOT_CHECKED = "not checked"
LABELS = {
    "backup_versioning": "Backup versioning",
    "backup_retention": "Backup retention",
    "backup_object_lock": "Backup Object Lock",
    "backup_public_access": "Backup public access",
    "backup_policy": "Backup bucket policy",
    "source_trigger": "Source trigger",
    "encryption": "Encryption",
}
_ORDER = {check.value: i for i, check in enumerate(CheckId)}


@dataclass(frozen=True)
class Result:
    """One stored result of a check (ProtectionResult's fields that matter here)."""

    check_id: str
    state: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class StateChange:
    check_id: str
    at: datetime
    from_state: str | None  # None: the check's first result ever
    to_state: str
    reason: str

    @property
    def label(self) -> str:
        return LABELS.get(self.check_id, self.check_id)


@dataclass
class CheckMonth:
    check_id: str
    at_start: Result | None  # the result in force when the month (or the pair) began
    changes: list[StateChange] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # state (or NOT_CHECKED) -> time
    span_seconds: float = 0.0

    @property
    def label(self) -> str:
        return LABELS.get(self.check_id, self.check_id)

    @property
    def state_at_start(self) -> str | None:
        return self.at_start.state if self.at_start else None

    @property
    def worst(self) -> str:
        """The worst state held at any time of the month (``not checked`` if none)."""
        held = [s for s in self.seconds if s != NOT_CHECKED]
        if self.state_at_start:
            held.append(self.state_at_start)
        held += [c.to_state for c in self.changes]
        return min(held, key=_rank) if held else NOT_CHECKED

    @property
    def ok_ratio(self) -> float | None:
        if self.span_seconds <= 0:
            return None
        return self.seconds.get(CheckState.OK.value, 0.0) / self.span_seconds

    @property
    def not_checked_ratio(self) -> float:
        if self.span_seconds <= 0:
            return 0.0
        return self.seconds.get(NOT_CHECKED, 0.0) / self.span_seconds

    @property
    def ok_shown(self) -> str:
        return percent(self.ok_ratio)


def percent(ratio: float | None) -> str:
    """A share of time, truncated to one decimal like the freshness figures (never rounded
    up to 100%)."""
    if ratio is None:
        return "—"
    # Rounded first at a millionth so that float noise (0.3 * 1000 = 299.999...) is not cut.
    whole, tenth = divmod(math.floor(round(ratio * 1000, 6)), 10)
    return f"{whole}.{tenth}%"


def _rank(state: str) -> int:
    try:
        return CheckState(state).rank
    except ValueError:
        return len(CheckState)


def months_of_checks(
    at_start: Mapping[str, Result],
    results: Iterable[Result],
    span_start: datetime,
    span_end: datetime,
) -> list[CheckMonth]:
    """Each check's month from the result in force at ``span_start`` (per check) and the
    results within [span_start, span_end) in time order; results that repeat the state
    before them change nothing, so any superset of the changes gives the same answer."""
    by_check: dict[str, list[Result]] = {}
    for result in results:
        by_check.setdefault(result.check_id, []).append(result)
    months = []
    for check_id in sorted(set(at_start) | set(by_check), key=lambda c: (_ORDER.get(c, 99), c)):
        start = at_start.get(check_id)
        month = CheckMonth(check_id, start, span_seconds=_seconds(span_start, span_end))
        state, since = (start.state if start else NOT_CHECKED), span_start
        for result in sorted(by_check.get(check_id, []), key=lambda r: r.at):
            if result.state == state:
                continue
            _add(month.seconds, state, since, result.at)
            month.changes.append(
                StateChange(
                    check_id,
                    result.at,
                    None if state == NOT_CHECKED else state,
                    result.state,
                    result.reason,
                )
            )
            state, since = result.state, result.at
        _add(month.seconds, state, since, span_end)
        months.append(month)
    return months


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _add(seconds: dict[str, float], state: str, start: datetime, end: datetime) -> None:
    if end > start:
        seconds[state] = seconds.get(state, 0.0) + _seconds(start, end)

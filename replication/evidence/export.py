"""The monthly report as CSV (pure): one row per fact, ``section, at_utc, item, value,
detail``, so a script can filter by section and a person can read the detail. Times are
UTC (ISO 8601 with Z); text cells are neutralised for spreadsheets (see
replication/dashboard/export.py)."""

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

from replication.dashboard.export import neutralise
from replication.evidence.freshness import format_objective, format_target
from replication.evidence.protection import NOT_CHECKED
from replication.evidence.report import Report

HEADER = ["section", "at_utc", "item", "value", "detail"]


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: object) -> object:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | Decimal):
        return value
    return neutralise(value)


def rows(report: Report) -> Iterator[list]:
    """The report's facts, in the page's order."""
    pair, fresh = report.pair, report.freshness
    yield ["report", "", "pair", pair.name, f"{pair.source_location} -> {pair.backup_location}"]
    yield ["report", "", "month", report.label, "complete" if report.complete else "so far"]
    yield ["report", _z(report.generated_at), "generated", "", ""]
    yield [
        "report",
        "",
        "lag_objective_seconds",
        report.objective.seconds,
        f"in force at the end of the month ({format_objective(report.objective.seconds)})",
    ]
    yield ["report", "", "target_percent", report.objective.target, ""]
    for change in report.changes:
        yield [
            "objective_change",
            _z(change.at),
            "lag_objective_seconds",
            change.lag_objective_after,
            f"was {format_objective(change.lag_objective_before)}; target "
            f"{format_target(change.target_after)} (was {format_target(change.target_before)})",
        ]
    yield ["freshness", "", "copies", fresh.copies, ""]
    yield ["freshness", "", "within_objective", fresh.within, ""]
    yield ["freshness", "", "late", fresh.late, ""]
    yield ["freshness", "", "percent_within", _percent(fresh.ratio), fresh.shown]
    yield ["freshness", "", "target_met", "" if fresh.met is None else fresh.met, ""]
    yield ["freshness", "", "error_budget", fresh.budget, "copies that may be late"]
    yield ["freshness", "", "error_budget_remaining", fresh.budget_remaining, ""]
    yield ["freshness", "", "burn_rate", _round(fresh.burn_rate), ""]
    for day in report.worst_days:
        f = day.freshness
        yield [
            "worst_day",
            day.day.isoformat(),
            "percent_within",
            _percent(f.ratio),
            f"{f.late:,} of {f.copies:,} copies late",
        ]
    for day in report.days:
        f = day.freshness
        yield [
            "day",
            day.day.isoformat(),
            "percent_within",
            _percent(f.ratio),
            f"{f.within} of {f.copies} copies within; reconcile: {day.coverage}",
        ]
    yield [
        "reconcile",
        "",
        "days_in_sync",
        report.in_sync_days,
        f"of {len(report.counted_days)} days",
    ]
    for verdict, n in report.verdict_counts:
        yield ["reconcile", "", f"runs_{verdict}", n, ""]
    for item in report.out_of_sync:
        yield [
            "out_of_sync_run",
            _z(item.run.created_at),
            f"run {item.run.pk}",
            item.found,
            item.ended,
        ]
    yield from _protection(report)
    if not report.drills.recorded:
        yield ["drills", "", "recorded", False, report.drills.note]
    for row in report.drills.rows:
        yield ["drills", *row]
    if report.state_at_start is not None:
        change = report.state_at_start
        yield ["health", "", "state_at_start", change.to_state, change.reason]
    for change in report.health_changes:
        yield [
            "health_change",
            _z(change.at),
            f"{change.from_state or 'new'} -> {change.to_state}",
            change.to_state,
            change.reason,
        ]
    for note in report.notifications:
        yield [
            "alert",
            _z(note.sent_at or note.created_at),
            f"{note.kind} to {note.channel.name}",
            note.status,
            note.reason,
        ]


def _protection(report: Report) -> Iterator[list]:
    """Per check: the state at the start, the worst, the share of time ok; then every change."""
    section = report.protection
    if not section.recorded:
        yield ["protection", "", "recorded", False, section.note]
        return
    measured = f"of {_z(section.since)} to {_z(section.until)}"
    for check in section.checks:
        start = check.at_start
        yield [
            "protection",
            _z(start.at) if start else "",
            f"{check.check_id}.state_at_start",
            start.state if start else NOT_CHECKED,
            start.reason if start else "",
        ]
        yield ["protection", "", f"{check.check_id}.worst_state", check.worst, ""]
        yield [
            "protection",
            "",
            f"{check.check_id}.percent_ok",
            _percent(check.ok_ratio),
            f"{measured}; {_percent(check.not_checked_ratio)}% not checked",
        ]
    for change in section.changes:
        yield [
            "protection_change",
            _z(change.at),
            f"{change.check_id}: {change.from_state or NOT_CHECKED} -> {change.to_state}",
            change.to_state,
            change.reason,
        ]


def _percent(ratio: float | None) -> object:
    return "" if ratio is None else round(100 * ratio, 4)


def _round(value: float | None) -> object:
    return "" if value is None else round(value, 3)


class _Line:
    def write(self, value: str) -> str:
        return value


def csv_text(report: Report) -> str:
    writer = csv.writer(_Line())
    lines = [writer.writerow(HEADER)]
    lines += [writer.writerow([_cell(c) for c in row]) for row in rows(report)]
    return "".join(lines)

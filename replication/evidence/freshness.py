"""Freshness maths (pure): shares of copies within the lag objective, error budgets, burn
rates, UTC months and days, and the health rule. No Django, no I/O.

Freshness of a period = copies that finished within the lag objective / all copies (status
``copied``, by ``finished_at``). The error budget of a month is the number of copies that may
be late with the month still meeting its target: ``floor(copies x (1 - target))``; what is
left of it is that minus the copies already late (negative once overspent). The burn rate is
the late share over the share the target allows: 1 spends the budget exactly by the end of
the period, 2 twice as fast.
"""

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction

# The window of the 30-day figure, in UTC days, today included.
WINDOW_DAYS = 30
# Months a report can cover: this one and the twelve before it.
MONTHS_KEPT = 13
DEFAULT_TARGET = Decimal("99.900")

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Freshness:
    """Copies of one period and how many finished within the objective, against a target
    (a percentage, e.g. Decimal("99.9"))."""

    copies: int
    within: int
    target: Decimal = DEFAULT_TARGET

    @property
    def late(self) -> int:
        return self.copies - self.within

    @property
    def ratio(self) -> float | None:
        """The share within, 0..1; None without copies (nothing to measure)."""
        return self.within / self.copies if self.copies else None

    @property
    def percent(self) -> float | None:
        return None if self.ratio is None else 100 * self.ratio

    @property
    def met(self) -> bool | None:
        if not self.copies:
            return None
        return Fraction(self.within, self.copies) >= _share(self.target)

    @property
    def budget(self) -> int:
        """Copies that may be late in this period with the target still met."""
        return math.floor(self.copies * (1 - _share(self.target)))

    @property
    def budget_remaining(self) -> int:
        return self.budget - self.late

    @property
    def burn_rate(self) -> float | None:
        """Late share / allowed late share; None without copies or with a 100% target."""
        allowed = 1 - _share(self.target)
        if not self.copies or allowed == 0:
            return None
        return float(Fraction(self.late, self.copies) / allowed)

    @property
    def shown(self) -> str:
        return format_share(self)

    def __add__(self, other: "Freshness") -> "Freshness":
        return Freshness(self.copies + other.copies, self.within + other.within, self.target)

    def with_target(self, target: Decimal) -> "Freshness":
        return Freshness(self.copies, self.within, target)


def _share(target: Decimal) -> Fraction:
    return Fraction(Decimal(target)) / 100


def total(periods: Iterable[Freshness], target: Decimal = DEFAULT_TARGET) -> Freshness:
    copies = within = 0
    for period in periods:
        copies += period.copies
        within += period.within
    return Freshness(copies, within, target)


# --- formatting ---------------------------------------------------------------------------


def format_share(period: Freshness) -> str:
    """The share within as a percentage, truncated (never rounded up onto the target or to
    100%), with as many decimals as the target has (at least one)."""
    if not period.copies:
        return "—"
    exponent = Decimal(period.target).normalize().as_tuple().exponent
    decimals = max(1, -exponent if isinstance(exponent, int) else 1)
    scaled = math.floor(Fraction(100 * period.within * 10**decimals, period.copies))
    whole, fraction = divmod(scaled, 10**decimals)
    return f"{whole}.{fraction:0{decimals}d}%"


def format_target(target: Decimal) -> str:
    text = f"{Decimal(target):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"


def format_objective(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# --- the health rule ------------------------------------------------------------------------


def freshness_finding(window: Freshness, objective_seconds: int) -> tuple[str, str] | None:
    """("warning", reason) when the last 30 days fall below the target; None otherwise (or
    with no copies to measure)."""
    if window.met is not False:
        return None
    return (
        "warning",
        f"freshness {format_share(window)} of copies within "
        f"{format_objective(objective_seconds)} over {WINDOW_DAYS} days, "
        f"target {format_target(window.target)}",
    )


# --- UTC days and months --------------------------------------------------------------------


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def midnight(day: date) -> datetime:
    """The start of ``day``, UTC."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def window_days(now: datetime) -> tuple[date, date]:
    """The 30-day window's first day and the day after it ends (today + 1), UTC."""
    today = utc_day(now)
    return today - timedelta(days=WINDOW_DAYS - 1), today + timedelta(days=1)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def months_back(now: datetime, count: int = MONTHS_KEPT) -> list[date]:
    """The first days of the ``count`` months up to this one (UTC), oldest first."""
    months = [month_start(utc_day(now))]
    while len(months) < count:
        months.append(previous_month(months[-1]))
    return months[::-1]


def parse_month(text: str) -> date | None:
    """``YYYY-MM`` as the month's first day; None if it is not one."""
    match = _MONTH.match(text or "")
    if not match:
        return None
    year, month = int(match[1]), int(match[2])
    if not (1 <= month <= 12 and 1 <= year <= 9999):
        return None
    return date(year, month, 1)


def month_problem(month: date, now: datetime, pair_created: datetime) -> str | None:
    """Why there is no report for ``month``: in the future, or before the pair existed."""
    if month > month_start(utc_day(now)):
        return f"{month:%Y-%m} has not begun yet (it is {utc_day(now):%Y-%m-%d} UTC)."
    if next_month(month) <= month_start(utc_day(pair_created)):
        return (
            f"The pair did not exist in {month:%Y-%m}: it was registered on "
            f"{utc_day(pair_created):%Y-%m-%d} UTC."
        )
    return None


def days_of(month: date) -> list[date]:
    end = next_month(month)
    return [month + timedelta(days=n) for n in range((end - month).days)]

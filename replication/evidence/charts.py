"""Geometry of the freshness charts (pure): one bar per month or day, from a floor chosen
so that the target line and the late periods stand out, up to 100%.

A share of 99.2% against a target of 99.9% is invisible on a 0-100% axis; the axis starts
at the highest round floor below both the target and the lowest bar.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from replication.evidence.freshness import Freshness, format_target

FLOORS = (99.9, 99.5, 99.0, 98.0, 95.0, 90.0, 75.0, 50.0, 0.0)


@dataclass
class FreshnessBar:
    x: float
    width: float
    y: float
    height: float
    kind: str  # "met", "missed" or "empty"
    title: str
    label: str
    minor: bool = False  # a label a narrow screen may leave out


@dataclass
class FreshnessChart:
    width: int
    height: int
    floor: float
    target_y: float
    target_label: str
    bars: list[FreshnessBar] = field(default_factory=list)
    gridlines: list[tuple[float, str]] = field(default_factory=list)  # (y, label)

    @property
    def empty(self) -> bool:
        return all(bar.kind == "empty" for bar in self.bars)


def axis_floor(values: Sequence[float], target: float) -> float:
    lowest = min([*values, target])
    return next(f for f in FLOORS if f < target and f <= lowest)


def freshness_chart(
    periods: Sequence[tuple[str, Freshness]],
    target: Decimal,
    *,
    unit: str = "copies",
    long_labels: Sequence[str] | None = None,
    width: int = 600,
    height: int = 120,
) -> FreshnessChart:
    """Bars for ``periods`` ((label, freshness), oldest first) against ``target`` (percent);
    ``long_labels``, if given, name the periods in the bars' titles."""
    percents = [f.percent for _, f in periods if f.percent is not None]
    goal = float(target)
    floor = axis_floor(percents, goal)
    span = 100.0 - floor

    def y_of(value: float) -> float:
        return round(height - (max(value, floor) - floor) / span * height, 1)

    chart = FreshnessChart(
        width=width,
        height=height,
        floor=floor,
        target_y=y_of(goal),
        target_label=format_target(target),
        gridlines=[(0.0, "100%"), (float(height), format_target(Decimal(str(floor))))],
    )
    # A tick label too close to the target's would print over it: the target's wins.
    chart.gridlines = [
        (y, label if abs(y - chart.target_y) >= 12 else "") for y, label in chart.gridlines
    ]
    if not periods:
        return chart
    slot = width / len(periods)
    bar_width = round(max(slot * 0.7, 1.0), 1)
    for i, (label, fresh) in enumerate(periods):
        x = round(i * slot + (slot - bar_width) / 2, 1)
        # On a phone only every fifth label of a long row (and the first) stays.
        minor = len(periods) > 14 and i % 5 != 4 and i != 0
        name = long_labels[i] if long_labels else label
        if fresh.percent is None:
            chart.bars.append(
                FreshnessBar(x, bar_width, height, 0, "empty", f"{name}: no {unit}", label, minor)
            )
            continue
        y = y_of(fresh.percent)
        # A bar at the floor is still drawn, one pixel high, so a terrible day is not blank.
        bar_height = max(round(height - y, 1), 1.0)
        title = (
            f"{name}: {fresh.shown} within the objective "
            f"({fresh.within:,} of {fresh.copies:,} {unit}, {fresh.late:,} late)"
        )
        kind = "met" if fresh.met else "missed"
        chart.bars.append(
            FreshnessBar(
                x, bar_width, round(height - bar_height, 1), bar_height, kind, title, label, minor
            )
        )
    return chart

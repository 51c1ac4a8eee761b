"""Chart geometry for server-rendered SVG: numbers in, coordinates out; no markup, no I/O.

Templates draw what these return, so a chart needs no JavaScript and no chart library.
The y axis grows downwards in SVG: a value v sits at ``height - v * scale``.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``value``: a round axis maximum."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _fmt(number: float) -> str:
    return f"{number:.1f}".rstrip("0").rstrip(".")


def polylines(values: Sequence[float | None], width: float, height: float, top: float) -> list[str]:
    """SVG ``points`` strings, one per run of consecutive known values (gaps stay gaps).

    A run of a single value becomes a short flat segment so it is still visible.
    """
    if not values:
        return []
    step = width / max(len(values) - 1, 1)
    scale = height / top if top > 0 else 0
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
            continue
        y = height - min(value, top) * scale
        current.append((i * step, y))
    if current:
        runs.append(current)
    lines = []
    for run in runs:
        if len(run) == 1:
            x, y = run[0]
            run = [(max(x - step / 2, 0), y), (min(x + step / 2, width), y)]
        lines.append(" ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in run))
    return lines


@dataclass
class Sparkline:
    width: int
    height: int
    lines: list[str]
    peak: float | None  # the largest value drawn, for the tooltip
    filled: int = 0  # how many buckets have a value

    @property
    def empty(self) -> bool:
        return not self.lines

    @property
    def too_little(self) -> bool:
        """One bucket with data draws a lone dot: a young pair says so in words instead."""
        return not self.empty and self.filled < 2


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 24) -> Sparkline:
    known = [v for v in values if v is not None]
    peak = max(known) if known else None
    # One pixel of margin top and bottom so the stroke is not clipped.
    lines = polylines(values, width, height - 2, peak or 1.0)
    lines = [" ".join(_shift(point, 1) for point in line.split()) for line in lines]
    return Sparkline(width, height, lines, peak, filled=len(known))


def _shift(point: str, dy: float) -> str:
    x, y = point.split(",")
    return f"{x},{_fmt(float(y) + dy)}"


@dataclass
class Series:
    name: str
    lines: list[str]


@dataclass
class Bar:
    x: float
    width: float
    y: float
    height: float
    kind: str  # "copies" or "failures"
    title: str


@dataclass
class Chart:
    width: int
    height: int
    top: float
    series: list[Series] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    reference_y: float | None = None  # a horizontal line, e.g. the lag objective
    gridlines: list[tuple[float, float]] = field(default_factory=list)  # (y, value)
    filled: int = 0  # how many buckets have data

    @property
    def empty(self) -> bool:
        return not self.series and not any(bar.height for bar in self.bars)

    @property
    def too_little(self) -> bool:
        """Everything in one bucket (a pair younger than one): a frame with a lone dot or bar
        says less than a sentence."""
        return not self.empty and self.filled < 2


def _gridlines(top: float, height: float) -> list[tuple[float, float]]:
    return [(height - height * f, top * f) for f in (0.5, 1.0)]


def line_chart(
    series: dict[str, Sequence[float | None]],
    width: int = 1200,
    height: int = 150,
    reference: float | None = None,
) -> Chart:
    """Several series over the same buckets, sharing one y axis rounded up to a nice value.

    ``reference`` (say, the lag objective) is drawn as a line when it is within twice the
    data's range, so one slow copy does not flatten everything else to the floor.
    """
    known = [v for values in series.values() for v in values if v is not None]
    peak = max(known) if known else 0.0
    top = nice_ceiling(peak)
    chart = Chart(width, height, top, gridlines=_gridlines(top, height))
    columns = zip(*series.values(), strict=True)
    chart.filled = sum(1 for column in columns if any(v is not None for v in column))
    if reference is not None and reference <= top:
        chart.reference_y = height - reference * height / top
    for name, values in series.items():
        lines = polylines(values, width, height, top)
        if lines:
            chart.series.append(Series(name, lines))
    return chart


def bar_chart(
    copies: Sequence[int],
    failures: Sequence[int],
    labels: Sequence[str],
    width: int = 1200,
    height: int = 100,
) -> Chart:
    """Copies and failures per bucket, stacked (failures on top, so they stand out)."""
    totals = [c + f for c, f in zip(copies, failures, strict=True)]
    top = nice_ceiling(max(totals, default=0))
    chart = Chart(width, height, top, gridlines=_gridlines(top, height))
    chart.filled = sum(1 for total in totals if total)
    if not totals:
        return chart
    slot = width / len(totals)
    bar_width = max(slot * 0.8, 1.0)
    scale = height / top
    for i, (c, f, label) in enumerate(zip(copies, failures, labels, strict=True)):
        x = round(i * slot + (slot - bar_width) / 2, 1)
        copies_height = round(c * scale, 1)
        failures_height = round(f * scale, 1)
        title = f"{label}: {c} copied, {f} failed"
        if c:
            chart.bars.append(
                Bar(x, round(bar_width, 1), height - copies_height, copies_height, "copies", title)
            )
        if f:
            y = height - copies_height - failures_height
            chart.bars.append(
                Bar(x, round(bar_width, 1), round(y, 1), failures_height, "failures", title)
            )
    return chart

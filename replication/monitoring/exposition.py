"""The Prometheus text format, written straight from metric families (pure: no Django).

prometheus_client builds a sample object with a label dictionary for every value, and its
``generate_latest`` checks and escapes every label name of every sample; with a thousand
pairs (some 40,000 samples) that alone takes longer than a scrape may. The families with a
series per pair are ``Family`` here instead: rows of label values, written as text lines
directly. The metric and label names are the site's own, fixed and valid, so only label
values are escaped. The bytes are those ``generate_latest`` writes for the same families
(tests/test_metrics.py compares them, through ``Family.metric``).
"""

import functools
from collections.abc import Iterable

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    Sample,
)
from prometheus_client.utils import floatToGoString

# How the text format names and types an OpenMetrics family.
_SUFFIX = {"counter": "_total", "info": "_info"}
_TYPE = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
# Samples only OpenMetrics has a place for: written after the family, as gauges of their own.
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")


class Family:
    """A counter, gauge or histogram family kept as rows and written as text by ``text``;
    ``add_metric`` as on prometheus_client's families."""

    _KINDS = {
        "counter": CounterMetricFamily,
        "gauge": GaugeMetricFamily,
        "histogram": HistogramMetricFamily,
    }

    def __init__(self, kind: str, name: str, documentation: str, labels: list[str]):
        self.type, self.name, self.documentation = kind, name, documentation
        self.labels = labels
        self.rows: list[tuple] = []  # (label values, value) or (label values, buckets, sum)
        self._sample = name + _SUFFIX.get(kind, "")

    def add_metric(self, labels: list[str], value, sum_value: float | None = None) -> None:
        self.rows.append((labels, value, sum_value))

    def metric(self) -> Metric:
        """The same family as prometheus_client's (for comparison)."""
        family = self._KINDS[self.type](self.name, self.documentation, labels=self.labels)
        for labels, value, sum_value in self.rows:
            if self.type == "histogram":
                family.add_metric(labels, value, sum_value)
            else:
                family.add_metric(labels, value)
        return family

    def lines(self) -> Iterable[str]:
        names = self.labels
        if self.type != "histogram":
            braces = _braces_for(names)
            for values, value, _ in self.rows:
                yield f"{self._sample}{braces(values)} {_number(value)}\n"
            return
        braces, with_le = _braces_for(names), _braces_for([*names, "le"])
        # When "le" sorts first (it does before "pair"), a bucket's labels are the row's with
        # le="..." in front: the row's part is written once, not once per bucket.
        le_first = all(name > "le" for name in names)
        bucket = f"{self.name}_bucket"
        for values, buckets, sum_value in self.rows:
            labels = braces(values)
            rest = "," + labels[1:] if labels else "}"
            for le, count in buckets:
                if le_first:
                    yield f'{bucket}{{le="{_escape(le)}"{rest} {_number(count)}\n'
                else:
                    yield f"{bucket}{with_le([*values, le])} {_number(count)}\n"
            if float(buckets[0][0]) >= 0 and sum_value is not None:
                yield f"{self.name}_count{labels} {_number(buckets[-1][1])}\n"
                yield f"{self.name}_sum{labels} {_number(sum_value)}\n"


def _braces_for(names: list[str]):
    """A function writing label values (in ``names``' order) as ``{name="value",...}``,
    names sorted as the text format has them; the order is worked out once per family."""
    if not names:
        return lambda values: ""
    if len(names) == 1:
        return lambda values: _one_label(names[0], values[0])
    if len(names) == 2:
        # Most families with a series per pair have two labels: written without a join.
        first, second = sorted(range(2), key=names.__getitem__)
        a, b = names[first], names[second]
        return lambda values: f'{{{a}="{_escape(values[first])}",{b}="{_escape(values[second])}"}}'
    order = sorted(range(len(names)), key=names.__getitem__)
    return lambda values: "{" + ",".join(f'{names[i]}="{_escape(values[i])}"' for i in order) + "}"


@functools.lru_cache(maxsize=8192)
def _one_label(name: str, value: str) -> str:
    # Cached: most families are labelled by pair alone, and a scrape writes each pair's in
    # a dozen of them.
    return f'{{{name}="{_escape(value)}"}}'


# Counts are integers, tens of thousands a scrape. From 0 up to this one, the Go float
# format is the digits and ".0", as floatToGoString writes it (at several times the cost);
# from 1e+06 on, Go writes an exponent, so larger ones go through floatToGoString.
_PLAIN_BELOW = 1_000_000


def _number(value) -> str:
    if type(value) is int and 0 <= value < _PLAIN_BELOW:
        return f"{value}.0"
    return floatToGoString(value)


def text(metrics: Iterable[Metric | Family]) -> bytes:
    """The families in the Prometheus text format (version 0.0.4), UTF-8."""
    out: list[str] = []
    for metric in metrics:
        if isinstance(metric, Family):
            name = metric.name + _SUFFIX.get(metric.type, "")
            documentation = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {name} {documentation}\n# TYPE {name} {metric.type}\n")
            out.extend(metric.lines())
            continue
        name = metric.name + _SUFFIX.get(metric.type, "")
        documentation = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {documentation}\n")
        out.append(f"# TYPE {name} {_TYPE.get(metric.type, metric.type)}\n")
        apart: dict[str, list[str]] = {}
        own = {metric.name + suffix: suffix for suffix in _OPENMETRICS_ONLY}
        for sample in metric.samples:
            suffix = own.get(sample.name)
            if suffix is None:
                out.append(_line(sample))
            else:
                apart.setdefault(suffix, []).append(_line(sample))
        for suffix, lines in sorted(apart.items()):
            out.append(f"# HELP {metric.name}{suffix} {documentation}\n")
            out.append(f"# TYPE {metric.name}{suffix} gauge\n")
            out.extend(lines)
    return "".join(out).encode()


def _line(sample: Sample) -> str:
    labels = ""
    if sample.labels:
        pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
        labels = f"{{{pairs}}}"
    timestamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
    return f"{sample.name}{labels} {floatToGoString(sample.value)}{timestamp}\n"


@functools.lru_cache(maxsize=8192)
def _escape(value: str) -> str:
    # Cached: a pair's name is written in some forty samples of a scrape.
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")

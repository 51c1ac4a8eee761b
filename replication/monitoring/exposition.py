"""The Prometheus text format, written straight from metric families (pure: no Django).

prometheus_client's ``generate_latest`` checks and escapes every label name of every
sample; with a thousand pairs (some 40,000 samples) that alone takes longer than a scrape
may. The metric and label names here are the site's own, fixed and valid, so only label
values are escaped. The bytes are those ``generate_latest`` writes for the same families
(tests/test_metrics.py compares them).
"""

from collections.abc import Iterable

from prometheus_client.core import Metric, Sample
from prometheus_client.utils import floatToGoString

# How the text format names and types an OpenMetrics family.
_SUFFIX = {"counter": "_total", "info": "_info"}
_TYPE = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
# Samples only OpenMetrics has a place for: written after the family, as gauges of their own.
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")


def text(metrics: Iterable[Metric]) -> bytes:
    """The families in the Prometheus text format (version 0.0.4), UTF-8."""
    out: list[str] = []
    for metric in metrics:
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


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")

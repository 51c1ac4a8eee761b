"""/metrics' freshness series (no I/O: the figures come from facts.summaries)."""

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from replication.evidence.facts import Summary
from replication.evidence.freshness import WINDOW_DAYS


def freshness_families(
    names: Iterable[tuple[int, str]], figures: dict[int, Summary], prefix: str
) -> Iterator[Metric]:
    """``names``: (pair id, pair name), in the order to list them."""
    ratio = GaugeMetricFamily(
        f"{prefix}_freshness_ratio",
        "Share of copies that finished within the pair's lag objective, over the last 30 UTC "
        "days (today included); absent while the pair has no copy in the window.",
        labels=["pair", "window"],
    )
    budget = GaugeMetricFamily(
        f"{prefix}_freshness_budget_remaining",
        "Copies that may still be late this UTC month with the freshness target met "
        "(negative: the target is already missed).",
        labels=["pair"],
    )
    for pair_id, name in names:
        summary = figures.get(pair_id)
        if summary is None:
            continue
        if summary.window.ratio is not None:
            ratio.add_metric([name, f"{WINDOW_DAYS}d"], summary.window.ratio)
        budget.add_metric([name], summary.month.budget_remaining)
    yield from (ratio, budget)

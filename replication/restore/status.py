"""What the restore drills say about each pair: health findings and /metrics series.

``drill_findings`` is the rule (pure); ``health_findings`` gathers the facts in two queries
and applies it, for the one health function to merge with its own findings.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Max, Subquery
from prometheus_client.core import GaugeMetricFamily, Metric

from replication.models import BucketPair, RestoreDrill

CRITICAL, WARNING = "critical", "warning"
Status = RestoreDrill.Status


@dataclass(frozen=True)
class LastDrill:
    status: str
    finished_at: datetime
    sampled: int
    verified: int
    error: str = ""


def drill_findings(
    every_days: int, registered_at: datetime, last: LastDrill | None, now: datetime
) -> list[tuple[str, str]]:
    """``(state, reason)`` for a pair's drills: a failed last drill is critical; one that
    could not run, or none for twice the interval, is a warning. Nothing when drills are off."""
    if every_days <= 0:
        return []
    findings = []
    if last is not None and last.status == Status.FAILED:
        differ = last.sampled - last.verified
        findings.append(
            (
                CRITICAL,
                f"last restore drill failed ({_utc(last.finished_at)}): {differ} of "
                f"{last.sampled} restored objects differ from the source",
            )
        )
    elif last is not None and last.status == Status.ERROR:
        findings.append(
            (WARNING, f"last restore drill could not run ({_utc(last.finished_at)}): {last.error}")
        )
    since = last.finished_at if last is not None else registered_at
    interval = timedelta(days=every_days)
    if now - since > 2 * interval:
        what = f"last one {_ago(now - since)} ago" if last is not None else "none yet"
        findings.append((WARNING, f"restore drill overdue: {what}, due every {_days(every_days)}"))
    return findings


def last_drills(pair_ids: Iterable[int] | None = None) -> dict[int, RestoreDrill]:
    """Each pair's latest finished drill (with its pair), in one query."""
    finished = RestoreDrill.objects.exclude(status=Status.RUNNING)
    if pair_ids is not None:
        finished = finished.filter(pair_id__any=list(pair_ids))
    latest = finished.order_by().values("pair_id").annotate(last=Max("id")).values("last")
    drills = RestoreDrill.objects.filter(id__in=Subquery(latest)).select_related("pair")
    return {drill.pair_id: drill for drill in drills}


def health_findings(pairs: Iterable[BucketPair], now: datetime) -> dict[int, list[tuple[str, str]]]:
    """Each pair's drill findings (``(state, reason)``; empty when all is well)."""
    pairs = list(pairs)
    drills = last_drills([pair.pk for pair in pairs])
    findings = {}
    for pair in pairs:
        drill = drills.get(pair.pk)
        last = (
            LastDrill(
                drill.status,
                drill.finished_at or drill.started_at,
                drill.sampled,
                drill.verified,
                drill.error,
            )
            if drill
            else None
        )
        findings[pair.pk] = drill_findings(
            pair.restore_drill_every_days, pair.created_at, last, now
        )
    return findings


def metric_families(prefix: str = "backupsite") -> Iterator[Metric]:
    """``<prefix>_drill_last_timestamp_seconds`` and ``<prefix>_drill_last_passed``."""
    finished = GaugeMetricFamily(
        f"{prefix}_drill_last_timestamp_seconds",
        "When the pair's latest restore drill finished (Unix time).",
        labels=["pair"],
    )
    passed = GaugeMetricFamily(
        f"{prefix}_drill_last_passed",
        "1 when the pair's latest restore drill passed, 0 when it failed or could not run.",
        labels=["pair"],
    )
    for drill in sorted(last_drills().values(), key=lambda d: d.pair.name):
        name = drill.pair.name
        finished.add_metric([name], (drill.finished_at or drill.started_at).timestamp())
        passed.add_metric([name], 1 if drill.status == Status.PASSED else 0)
    yield from (finished, passed)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{delta.total_seconds() / 3600:.0f} h"


def _days(n: int) -> str:
    return "day" if n == 1 else f"{n} days"

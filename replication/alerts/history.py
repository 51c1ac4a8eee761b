"""A pair's health timeline, for the pair page (templates/dashboard/_health_timeline.html)."""

from replication.models import BucketPair, HealthChange


def recent_changes(pair: BucketPair, limit: int = 20) -> list[HealthChange]:
    """The pair's latest changes of health, newest first (one query, the timeline index)."""
    return list(HealthChange.objects.filter(pair=pair).order_by("-sequence")[:limit])

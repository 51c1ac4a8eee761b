"""The pair page's restore panel: last verified restorable, estimated full restore, recent
restores. An inclusion tag, so the pair page needs one include line and no view change."""

from django import template

from replication.models import BucketPair, ReconcileRun, RestoreDrill

register = template.Library()

RECENT_RESTORES = 5


@register.inclusion_tag("dashboard/_restore_panel.html", takes_context=True)
def restore_panel(context, pair: BucketPair) -> dict:
    # The latest drills, enough to find the last passed one behind a few failed or errors.
    drills = list(pair.restore_drills.all()[:20])
    last = next((d for d in drills if d.status != RestoreDrill.Status.RUNNING), None)
    passed = next((d for d in drills if d.status == RestoreDrill.Status.PASSED), None)
    backup_bytes = (
        pair.reconcile_runs.filter(status=ReconcileRun.Status.SUCCEEDED)
        .values_list("destination_bytes", flat=True)
        .first()
    )
    estimate = None
    if passed and passed.throughput_bytes_s and backup_bytes:
        estimate = backup_bytes / passed.throughput_bytes_s
    user = context.get("user")
    return {
        "pair": pair,
        "running": next((d for d in drills if d.status == RestoreDrill.Status.RUNNING), None),
        "last": last,
        "passed": passed,
        "backup_bytes": backup_bytes,
        "estimate": estimate,
        "jobs": list(pair.restore_jobs.all()[:RECENT_RESTORES]),
        "can_restore": bool(user and user.has_perm("replication.restore_bucketpair")),
    }


@register.filter
def size(value: int | float | None) -> str:
    """Bytes in decimal units, as S3's console shows them: ``1.2 GB``."""
    if value is None:
        return ""
    value = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""

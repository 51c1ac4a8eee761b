"""The pair page's Protection panel and its "Check protection now" button (thin)."""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from replication.models import BucketPair, ProtectionResult
from replication.protection import store, tasks
from replication.protection.rules import CheckState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Panel:
    results: list[ProtectionResult]  # the latest of each check, in the checks' order
    checked_at: datetime | None  # when the oldest of them ran
    worst: str  # the worst state, "" before the first run


def panel(pair: BucketPair) -> Panel:
    """What the Protection panel shows of ``pair`` (one query)."""
    results = store.latest([pair.pk]).get(pair.pk, [])
    if not results:
        return Panel([], None, "")
    worst = min((CheckState(r.state) for r in results), key=lambda s: s.rank)
    return Panel(results, min(r.checked_at for r in results), worst.value)


@login_required
@require_POST
@permission_required("replication.run_protection_checks", raise_exception=True)
def check_now(request, name):
    pair = get_object_or_404(BucketPair, name=name)
    try:
        result = tasks.check_protection.apply_async(args=(pair.pk,))
    except Exception as exc:  # broker gone: say so, change nothing
        log.warning("pair %s: protection checks not queued: %s", pair.name, exc)
        messages.error(
            request,
            "The queue is unavailable: the protection checks were not started. Check that "
            "Redis and a Celery worker are running, or run `manage.py posture "
            f"{pair.name}`.",
        )
    else:
        if result.ready():  # ran in-process (no broker)
            messages.success(request, f"Protection of {pair.name} checked.")
        else:
            messages.success(
                request, f"The protection checks of {pair.name} are queued: reload in a moment."
            )
    return redirect(f"{pair_url(pair)}#protection")


def pair_url(pair: BucketPair) -> str:
    return reverse("dashboard:pair", args=[pair.name])

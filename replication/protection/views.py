"""The pair page's Protection panel and its "Check protection now" button (thin)."""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from replication.models import (
    BucketPair,
    CopyEvent,
    CopyStatus,
    GuardAudit,
    GuardHold,
    GuardRelease,
    ProtectionResult,
)
from replication.protection import guard, store, tasks
from replication.protection.rules import CheckState

log = logging.getLogger(__name__)


RECENT_AUDIT = 5
HELD_SHOWN = 50


@dataclass(frozen=True)
class HeldChange:
    key: str
    kind: str  # "delete" or "overwrite"
    at: datetime
    source_etag: str  # the source's new ETag ("" for a delete)


@dataclass(frozen=True)
class Panel:
    results: list[ProtectionResult]  # the latest of each check, in the checks' order
    checked_at: datetime | None  # when the oldest of them ran
    worst: str  # the worst state, "" before the first run
    hold: GuardHold | None = None  # the guard's open hold
    paused_until: datetime | None = None  # a pause still running
    audit: list[GuardAudit] = field(default_factory=list)  # the latest trips, releases, pauses
    held: list[HeldChange] = field(default_factory=list)  # the open hold's newest held changes
    held_total: int = 0
    kept: int = 0  # keys kept at a "keep" release that the source has not changed since


def panel(pair: BucketPair) -> Panel:
    """What the Protection panel shows of ``pair`` (four queries; two more while it holds)."""
    results = store.latest([pair.pk]).get(pair.pk, [])
    hold = guard.open_holds([pair.pk]).first()
    held, held_total = [], 0
    if hold is not None:
        rows = CopyEvent.objects.filter(
            pair=pair, status=CopyStatus.HELD, finished_at__gte=hold.since
        )
        held_total = rows.count()
        held = [
            HeldChange(
                key=event.key,
                kind="delete" if event.event_name.startswith("ObjectRemoved") else "overwrite",
                at=event.finished_at,
                source_etag=event.etag,
            )
            for event in rows.order_by("-finished_at", "-id")[:HELD_SHOWN]
        ]
    audit = list(GuardAudit.objects.filter(pair=pair).select_related("by")[:RECENT_AUDIT])
    kept = guard.kept_count(pair)
    paused = pair.guard_paused_until
    paused = paused if paused is not None and paused > timezone.now() else None
    if not results:
        return Panel([], None, "", hold, paused, audit, held, held_total, kept)
    worst = min((CheckState(r.state) for r in results), key=lambda s: s.rank)
    checked_at = min(r.checked_at for r in results)
    return Panel(results, checked_at, worst.value, hold, paused, audit, held, held_total, kept)


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


@login_required
@require_POST
@permission_required("replication.release_guard", raise_exception=True)
def guard_action(request, name):
    """Release the hold (apply | keep), pause the guard for some hours, or resume it."""
    pair = get_object_or_404(BucketPair, name=name)
    action = request.POST.get("action", "")
    if action in GuardRelease.values:
        hold = guard.release(pair, request.user, action)
        if hold is None:
            messages.info(request, f"The guard of {pair.name} holds nothing: nothing to release.")
        elif action == GuardRelease.APPLY:
            messages.success(
                request,
                f"Guard of {pair.name} released: a reconcile with repair applies the source's "
                "state to the backup.",
            )
        else:
            kept = guard.kept_count(pair)
            messages.success(
                request,
                f"Guard of {pair.name} released: the backup is kept as it is; "
                f"{kept:,} {'key' if kept == 1 else 'keys'} recorded as kept.",
            )
    elif action == "pause":
        try:
            until = guard.pause(pair, request.user, int(request.POST.get("hours", "")))
        except ValueError:
            messages.error(request, "Pause the guard for a whole number of hours, 1 to 168.")
        else:
            messages.success(
                request, f"Guard of {pair.name} paused until {until:%Y-%m-%d %H:%M} UTC."
            )
    elif action == "resume":
        guard.resume(pair, request.user)
        messages.success(request, f"Guard of {pair.name} resumed.")
    else:
        messages.error(request, "Unknown guard action: nothing was changed.")
    return redirect(f"{pair_url(pair)}#guard")


def pair_url(pair: BucketPair) -> str:
    return reverse("dashboard:pair", args=[pair.name])

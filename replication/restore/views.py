"""The restore pages: "Restore..." on a pair (plan, then confirm), a job's page with live
progress, and its outcomes as CSV; "Run drill now". Thin: the work is in job.py and
drill.py."""

from datetime import UTC

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from replication import s3 as s3_clients
from replication.buckets import RESERVED_PREFIX
from replication.dashboard import series
from replication.dashboard.export import csv_lines
from replication.dashboard.windows import window_named
from replication.models import (
    BucketPair,
    ReconcileRun,
    RestoredObject,
    RestoreDrill,
    RestoreJob,
    RestorePoint,
)
from replication.restore import drill as drills
from replication.restore import job as restores
from replication.restore.plan import parse_time
from replication.restore.queue import start_drill_task, start_restore

POLL_SECONDS = 2
RESTORES_PREFIX = RESERVED_PREFIX + "restores/"
RECENT_RESTORES = 5
OUTCOMES_PER_PAGE = 50
CSV_HEADER = [
    "key",
    "version_id",
    "size",
    "etag",
    "target_key",
    "outcome",
    "verified_by",
    "error_code",
    "error",
    "finished_at",
]


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("replication.restore_bucketpair", raise_exception=True)
def restore_form(request, name):
    """GET: the form. POST ``plan``: the plan, and a confirmation. POST ``confirm``: the
    plan again (the backup may have changed), then the job, queued."""
    pair = get_object_or_404(BucketPair, name=name)
    fields = {
        "at": request.POST.get("at", "").strip()[:64],
        "prefix": request.POST.get("prefix", "")[:1024],
        "to": request.POST.get("to", "").strip()[:1100],
        "into_source": request.POST.get("into_source") == "1",
    }
    # Versions are stamped when the Lambda copied them: the lag says how far after the write.
    lag = series.window_lag(pair.pk, window_named("24h"), timezone.now())
    context = {"pair": pair, "fields": fields, "lag_p95": lag[1] if lag else None}
    if request.method == "GET":
        # A restore point's link prefills the form; the plan checks the values as typed ones.
        fields["at"] = request.GET.get("at", "").strip()[:64] or timezone.now().strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        fields["prefix"] = request.GET.get("prefix", "")[:1024]
        fields["to"] = request.GET.get("to", "").strip()[:1100]
        return render(request, "dashboard/restore_form.html", context)
    step = request.POST.get("step")
    try:
        now = timezone.now()
        request_ = restores.make_request(
            pair,
            at=parse_time(fields["at"], now),
            prefix=fields["prefix"],
            to=fields["to"],
            into_source=fields["into_source"],
        )
        client = s3_clients.client(pair.region)
        restores.check(client, request_, now)
        totals = restores.count_plan(s3_clients.listing_client(pair.region), request_)
    except (ValueError, restores.RestoreRefused) as exc:
        context["error"] = str(exc)
        return render(request, "dashboard/restore_form.html", context, status=400)
    context.update(request=request_, totals=totals)
    if step != "confirm":
        return render(request, "dashboard/restore_form.html", context)
    if request_.into_source and request.POST.get("overwrite_source") != "1":
        context["error"] = (
            f"Restoring into the source overwrites objects in {request_.target.location}: "
            "tick the box to confirm it."
        )
        return render(request, "dashboard/restore_form.html", context, status=400)
    try:
        job = restores.create_job(
            request_, totals, via=RestoreJob.Via.PAGE, requested_by=request.user
        )
    except restores.RestoreRefused as exc:
        context["error"] = str(exc)
        return render(request, "dashboard/restore_form.html", context, status=409)
    job = start_restore(job)
    if job.status == RestoreJob.Status.FAILED:
        messages.error(request, f"Restore #{job.pk} failed: {job.error}")
    else:
        messages.success(request, f"Restore #{job.pk} of {pair.name} is {job.status}.")
    return redirect("restore:job", job_id=job.pk)


def _job_or_404(job_id):
    return get_object_or_404(RestoreJob.objects.select_related("pair", "requested_by"), pk=job_id)


@login_required
@require_GET
def restore_panel(request, name):
    """The pair page's restore panel, loaded on its own: last verified restorable, the
    estimated full restore, the latest restores (the pair page itself runs no query more)."""
    pair = get_object_or_404(BucketPair, name=name)
    # The latest drills, enough to find the last passed one behind a few failed or errors.
    latest = list(pair.restore_drills.all()[:20])
    passed = next((d for d in latest if d.status == RestoreDrill.Status.PASSED), None)
    backup_bytes = (
        pair.reconcile_runs.filter(status=ReconcileRun.Status.SUCCEEDED)
        .values_list("destination_bytes", flat=True)
        .first()
    )
    estimate = None
    if passed and passed.throughput_bytes_s and backup_bytes:
        estimate = backup_bytes / passed.throughput_bytes_s
    jobs = list(pair.restore_jobs.all()[:RECENT_RESTORES])
    context = {
        "pair": pair,
        "running": next((d for d in latest if d.status == RestoreDrill.Status.RUNNING), None),
        "last": next((d for d in latest if d.status != RestoreDrill.Status.RUNNING), None),
        "passed": passed,
        "backup_bytes": backup_bytes,
        "estimate": estimate,
        "jobs": jobs,
        "offer": open_restore_point(pair, jobs),
        "poll_seconds": POLL_SECONDS,
    }
    return render(request, "dashboard/_restore_panel.html", context)


def open_restore_point(pair: BucketPair, jobs: list[RestoreJob]) -> dict | None:
    """The newest of the pair's latest restore points that none of ``jobs`` restored (same
    moment and prefix), with the link that prefills "Restore..." with it; or None."""
    point = unrestored(pair.restore_points.all()[:RECENT_RESTORES], jobs)
    if point is None:
        return None
    query = QueryDict(mutable=True)
    query.update(
        {
            "at": point.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "prefix": point.prefix,
            # Next to the backup, where reconcile never looks: the safe place to look first.
            "to": f"{pair.backup_bucket}/{RESTORES_PREFIX}",
        }
    )
    url = reverse("restore:form", args=[pair.name])
    return {"point": point, "url": f"{url}?{query.urlencode()}"}


def unrestored(points, jobs) -> RestorePoint | None:
    """The first of ``points`` (newest first) that no job restored: same moment and prefix."""
    restored = {(job.at, job.prefix) for job in jobs}
    return next((p for p in points if (p.at, p.prefix) not in restored), None)


@login_required
@require_POST
@permission_required("replication.restore_bucketpair", raise_exception=True)
def drill_now(request, name):
    """Start a restore drill of the pair through Celery (in-process without a broker); the
    restore panel shows its result, or that it is running."""
    pair = get_object_or_404(BucketPair, name=name)
    try:
        drill = drills.start_drill(pair, requested_by=request.user)
    except drills.DrillRefused as refused:
        messages.info(request, f"Not started: {refused}.")
        return redirect(f"{reverse('dashboard:pair', args=[pair.name])}#restore")
    drill = start_drill_task(drill)
    if drill.status == RestoreDrill.Status.RUNNING:
        messages.success(
            request, f"Restore drill #{drill.pk} of {pair.name} is running: its result shows below."
        )
    elif drill.status == RestoreDrill.Status.PASSED:
        messages.success(
            request,
            f"Restore drill #{drill.pk} passed: {drill.verified} of {drill.sampled} objects "
            "restored, read back and verified.",
        )
    else:
        messages.error(request, f"Restore drill #{drill.pk} {drill.status}: {drill.error}")
    return redirect(f"{reverse('dashboard:pair', args=[pair.name])}#restore")


@login_required
@require_GET
def restore_detail(request, job_id):
    job = _job_or_404(job_id)
    outcome = request.GET.get("outcome", "")
    if outcome not in RestoredObject.Outcome.values:
        outcome = ""
    rows = job.outcomes.order_by("id")
    if outcome:
        rows = rows.filter(outcome=outcome)
    page = Paginator(rows, OUTCOMES_PER_PAGE).get_page(request.GET.get("page"))
    context = {"job": job, "poll_seconds": POLL_SECONDS, "page": page, "outcome": outcome}
    return render(request, "dashboard/restore.html", context)


@login_required
@require_POST
@permission_required("replication.restore_bucketpair", raise_exception=True)
def restore_cancel(request, job_id):
    """Cancel a queued or running restore (audited on the job: who and when)."""
    job = _job_or_404(job_id)
    if restores.cancel_job(job.pk, by=request.user):
        messages.success(
            request,
            f"Restore #{job.pk} cancelled: its copies stop within seconds, what it restored "
            f"is kept, and {job.target_bucket} is free for another restore.",
        )
    else:
        job.refresh_from_db(fields=["status"])
        messages.info(request, f"Restore #{job.pk} had already ended ({job.status}).")
    return redirect("restore:job", job_id=job.pk)


@login_required
@require_GET
def restore_progress(request, job_id):
    """The job's summary alone, polled while it is active; a watching page reloads whole
    once it has ended, to show the outcomes."""
    job = _job_or_404(job_id)
    response = render(
        request, "dashboard/_restore_summary.html", {"job": job, "poll_seconds": POLL_SECONDS}
    )
    if not job.is_active and request.GET.get("watching"):
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_GET
def restore_outcomes_csv(request, job_id):
    job = get_object_or_404(RestoreJob, pk=job_id)
    rows = job.outcomes.order_by("id").values_list(*CSV_HEADER).iterator(chunk_size=2000)
    response = StreamingHttpResponse(
        csv_lines(rows, CSV_HEADER), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="restore-{job.pk}-outcomes.csv"'
    return response

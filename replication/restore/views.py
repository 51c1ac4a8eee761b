"""The restore pages: "Restore..." on a pair (plan, then confirm), a job's page with live
progress, and its outcomes as CSV. Thin: the work is in job.py."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from replication import s3 as s3_clients
from replication.dashboard import series
from replication.dashboard.export import csv_lines
from replication.dashboard.windows import window_named
from replication.models import (
    BucketPair,
    ReconcileRun,
    RestoredObject,
    RestoreDrill,
    RestoreJob,
)
from replication.restore import job as restores
from replication.restore.plan import parse_time
from replication.restore.queue import start_restore

POLL_SECONDS = 2
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
        fields["at"] = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
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
    drills = list(pair.restore_drills.all()[:20])
    passed = next((d for d in drills if d.status == RestoreDrill.Status.PASSED), None)
    backup_bytes = (
        pair.reconcile_runs.filter(status=ReconcileRun.Status.SUCCEEDED)
        .values_list("destination_bytes", flat=True)
        .first()
    )
    estimate = None
    if passed and passed.throughput_bytes_s and backup_bytes:
        estimate = backup_bytes / passed.throughput_bytes_s
    context = {
        "pair": pair,
        "running": next((d for d in drills if d.status == RestoreDrill.Status.RUNNING), None),
        "last": next((d for d in drills if d.status != RestoreDrill.Status.RUNNING), None),
        "passed": passed,
        "backup_bytes": backup_bytes,
        "estimate": estimate,
        "jobs": list(pair.restore_jobs.all()[:RECENT_RESTORES]),
    }
    return render(request, "dashboard/_restore_panel.html", context)


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

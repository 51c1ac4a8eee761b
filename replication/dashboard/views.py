"""The dashboard's pages. Thin: a pair's facts and health come from replication/status/,
series from series.py, geometry from charts.py; a view picks what a page needs and
renders it."""

from datetime import timedelta
from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from replication.alerts.history import recent_changes
from replication.dashboard import charts, series
from replication.dashboard.export import HEADER, csv_lines
from replication.dashboard.humanize import duration
from replication.dashboard.windows import SPARKLINE_WINDOW, WINDOWS, window_named
from replication.evidence import facts as evidence
from replication.models import BucketPair, CopyEvent, Discrepancy, ObjectState, ReconcileRun
from replication.protection.views import panel as protection_panel
from replication.reconcile.queue import start_reconcile, was_not_queued
from replication.reconcile.wording import outcome
from replication.status import facts

# The overview's rows per page, worst first.
PAIRS_PER_PAGE = 50
FAILURES_PER_PAGE = 25
DISCREPANCIES_PER_PAGE = 50
RECENT_EVENTS = 20
RECENT_RUNS = 10
# Progress is polled this often while a run is queued or running.
POLL_SECONDS = 2
# Beat evaluates health every minute and records a pair's first state at once: a pair older
# than this with no state recorded has no evaluator running.
EVALUATION_GRACE = timedelta(minutes=2)


@login_required
@require_GET
@evidence.read_once()  # health's freshness finding and the freshness column read once
def overview(request):
    now = timezone.now()
    # Health, the order and the totals are over every pair; the page draws only its rows
    # (rendering a thousand rows alone would take longer than the whole page may).
    rows = facts.pair_health(now=now)
    query = request.GET.get("q", "").strip()[:200]
    found = [row for row in rows if query.lower() in row.pair.name.lower()] if query else rows
    page = Paginator(found, PAIRS_PER_PAGE).get_page(request.GET.get("page"))
    shown = list(page.object_list)
    ids = [row.pair.pk for row in shown]
    spark = series.sparklines(ids, now)
    # The day's copies and failures: the shown rows' are their sparklines' sums; only the
    # pairs off this page are counted apart (no histograms).
    day = {pk: (sum(b.copies for b in bs), sum(b.failures for b in bs)) for pk, bs in spark.items()}
    day |= series.day_totals([row.pair.pk for row in rows if row.pair.pk not in spark], now)
    totals = {
        "pairs": len(rows),
        "by_state": {},
        "copies": sum(copies for copies, _ in day.values()),
        "failures": sum(failures for _, failures in day.values()),
        "open_failures": sum(row.facts.open_failures for row in rows),
        # The sum of the pairs' figures, as /metrics' backupsite_objects_behind is.
        "lacking": sum(row.facts.lacking.total for row in rows),
    }
    for row in rows:
        state = row.health.state.value
        totals["by_state"][state] = totals["by_state"].get(state, 0) + 1
    active = dict(
        ReconcileRun.objects.filter(pair_id__in=ids, status__in=ReconcileRun.ACTIVE).values_list(
            "pair_id", "id"
        )
    )
    freshness = evidence.summaries([row.pair for row in shown], now)
    # Health read every pair's latest run as facts; the rows shown describe theirs in full.
    last_runs = ReconcileRun.objects.in_bulk(
        [row.facts.last_run.id for row in shown if row.facts.last_run]
    )
    pair_url, run_url = _url_maker("dashboard:pair", "x"), _url_maker("dashboard:run", 0)
    table = []
    for row in shown:
        copies, failures = day.get(row.pair.pk, (0, 0))
        last_run = last_runs.get(row.facts.last_run.id) if row.facts.last_run else None
        table.append(
            {
                "pair": row.pair,
                "url": pair_url(row.pair.name),
                "run_url": run_url(last_run.pk) if last_run else None,
                "active_run_url": run_url(active[row.pair.pk]) if row.pair.pk in active else None,
                "health": row.health,
                "facts": row.facts,
                "copies": copies,
                "failures": failures,
                "lag": row.facts.lag,
                "spark": charts.sparkline([b.p95 for b in spark.get(row.pair.pk, [])]),
                "last_run": last_run,
                "behind": _behind(row.facts, now),
                "freshness": freshness[row.pair.pk],
            }
        )
    return render(
        request,
        "dashboard/overview.html",
        {
            "rows": table,
            "page": page,
            "query": query,
            "totals": totals,
            "now": now,
            "spark_window": SPARKLINE_WINDOW,
            # The day's figures are the sparkline's hours, the current one so far included:
            # their labels name the first (a pair page's 24 hours begin elsewhere).
            "day_since": SPARKLINE_WINDOW.start(now),
            # The same as text for the cells' labels on a phone (an attribute holds no <time>).
            "day_since_utc": f"{SPARKLINE_WINDOW.start(now):%H:%M} UTC",
        },
    )


def _url_maker(view: str, example):
    """A function that makes ``view``'s URL for an argument, reversing only once: on a page
    of fifty rows, reversing each link costs more than the rest of a row."""
    before, _, after = reverse(view, args=[example]).rpartition(str(example))
    return lambda value: f"{before}{quote(str(value))}{after}"


def _behind(pair_facts, now):
    """The age of the oldest object the backup lacks (replication/status/lacking.py)."""
    return pair_facts.lacking.behind_by(now)


@login_required
@require_GET
def pair_detail(request, name):
    pair = get_object_or_404(BucketPair, name=name)
    now = timezone.now()
    window = window_named(request.GET.get("window"))
    row = facts.pair_health(BucketPair.objects.filter(pk=pair.pk), now=now)[0]
    buckets = series.series_by_pair([pair.pk], window, now)[pair.pk]
    labels = [f"{b.start:%Y-%m-%d %H:%M} UTC" for b in buckets]
    lag_chart = charts.line_chart(
        {
            "p50": [b.p50 for b in buckets],
            "p95": [b.p95 for b in buckets],
            "p99": [b.p99 for b in buckets],
        },
        reference=pair.lag_objective_seconds,
    )
    throughput = charts.bar_chart(
        [b.copies for b in buckets], [b.failures for b in buckets], labels
    )
    window_lag = series.window_lag(pair.pk, window, now)

    query = request.GET.get("q", "").strip()[:1024]
    failures = ObjectState.objects.open_failures().filter(pair=pair).order_by("-finished_at", "id")
    if query:
        failures = failures.filter(key__icontains=query)
    failures_page = Paginator(failures, FAILURES_PER_PAGE).get_page(request.GET.get("page"))

    runs = list(pair.reconcile_runs.select_related("requested_by")[:RECENT_RUNS])
    health_changes = recent_changes(pair)
    active_run = next((r for r in runs if r.is_active), None)
    context = {
        "pair": pair,
        "health": row.health,
        "facts": row.facts,
        "behind": _behind(row.facts, now),
        "window": window,
        "windows": WINDOWS.values(),
        "lag_chart": lag_chart,
        "throughput": throughput,
        "window_lag": window_lag,
        "window_copies": sum(b.copies for b in buckets),
        "window_failures": sum(b.failures for b in buckets),
        "first_label": labels[0] if labels else "",
        "query": query,
        "failures_page": failures_page,
        "events": CopyEvent.objects.filter(pair=pair)[:RECENT_EVENTS],
        "runs": runs,
        "active_run": active_run,
        "health_changes": health_changes,
        "never_evaluated": not health_changes and now - pair.created_at > EVALUATION_GRACE,
        "can_reconcile": request.user.has_perm("replication.reconcile_bucketpair"),
        "freshness": evidence.pair_freshness(pair, now),
        "protection": protection_panel(pair),
    }
    return render(request, "dashboard/pair.html", context)


@login_required
@require_POST
@permission_required("replication.reconcile_bucketpair", raise_exception=True)
def pair_reconcile(request, name):
    pair = get_object_or_404(BucketPair, name=name)
    repair = request.POST.get("repair") == "1"
    run, created = start_reconcile(
        pair, trigger=ReconcileRun.Trigger.MANUAL, requested_by=request.user, repair=repair
    )
    if not created:
        if repair and not run.repair:
            messages.warning(
                request,
                f"The repair was not started: a reconcile of {pair.name} without repair is "
                f"already {run.status} (this is that run). Press “Reconcile and repair” again "
                "once it has finished.",
            )
        else:
            messages.info(
                request, f"A reconcile of {pair.name} is already {run.status}: this is that run."
            )
    elif was_not_queued(run):
        # start_reconcile saved the run as failed with the broker's error: nothing stays queued.
        messages.error(
            request,
            "The queue is unavailable: the run could not be queued and was marked failed. "
            "Check that Redis and a Celery worker are running, then try again.",
        )
    elif run.status == ReconcileRun.Status.FAILED:
        messages.error(request, _ran_here(run))  # ran in-process (no broker) and failed
    elif run.status == ReconcileRun.Status.SUCCEEDED:
        messages.success(request, _ran_here(run))  # ran in-process (no broker)
    else:
        kind = "reconcile and repair" if repair else "reconcile"
        messages.success(request, f"The {kind} of {pair.name} is queued as run #{run.pk}.")
    return redirect("dashboard:run", run_id=run.pk)


def _ran_here(run: ReconcileRun) -> str:
    """What a run that ran inside the request found, and how long it took: without a broker
    it has ended before its page loads, so no progress bar is ever seen."""
    said = outcome(run)
    if run.duration_s is None:
        return said
    return f"{said.rstrip('.')}. It ran here, without a worker, in {duration(run.duration_s)}."


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links; the file is a static one."""
    return redirect(static("dashboard/favicon.ico"), permanent=True)


def _run_or_404(run_id):
    return get_object_or_404(ReconcileRun.objects.select_related("pair", "requested_by"), pk=run_id)


def _expected_objects(run: ReconcileRun) -> int | None:
    """Objects the previous successful run listed: the scale of a live progress bar."""
    if not run.is_active or run.ranges_total > 1:
        return None
    previous = (
        ReconcileRun.objects.filter(pair_id=run.pair_id, status=ReconcileRun.Status.SUCCEEDED)
        .order_by("-created_at", "-id")
        .values_list("source_objects", "destination_objects")
        .first()
    )
    return sum(previous) if previous else None


@login_required
@require_GET
def run_detail(request, run_id):
    run = _run_or_404(run_id)
    kinds = Discrepancy.Kind
    kind = request.GET.get("kind", "")
    if kind not in kinds.values:
        kind = ""
    query = request.GET.get("q", "").strip()[:1024]
    rows = run.discrepancies.all()
    if kind:
        rows = rows.filter(kind=kind)
    if query:
        rows = rows.filter(key__icontains=query)
    page = Paginator(rows.order_by("id"), DISCREPANCIES_PER_PAGE).get_page(request.GET.get("page"))
    outcomes = {
        row["repair_outcome"]: row["n"]
        for row in run.discrepancies.exclude(repair_outcome="")
        .values("repair_outcome")
        .annotate(n=Count("id"))
        .order_by()
    }
    context = {
        "run": run,
        "expected": _expected_objects(run),
        "poll_seconds": POLL_SECONDS,
        "kinds": [(value, label, getattr(run, value)) for value, label in kinds.choices],
        "kind": kind,
        "query": query,
        "page": page,
        "outcomes": [
            (label, outcomes[value])
            for value, label in Discrepancy.Repair.choices
            if value in outcomes
        ],
    }
    return render(request, "dashboard/run.html", context)


@login_required
@require_GET
def run_progress(request, run_id):
    """The run's summary alone, polled by htmx while the run is active. Once it has ended,
    a page that was watching it reloads whole, to show the discrepancies too."""
    run = _run_or_404(run_id)
    if not run.is_active and request.GET.get("watching"):
        response = render(request, "dashboard/_run_summary.html", {"run": run})
        response["HX-Refresh"] = "true"
        return response
    context = {"run": run, "expected": _expected_objects(run), "poll_seconds": POLL_SECONDS}
    return render(request, "dashboard/_run_summary.html", context)


@login_required
@require_GET
def run_discrepancies_csv(request, run_id):
    run = get_object_or_404(ReconcileRun.objects.select_related("pair"), pk=run_id)
    rows = run.discrepancies.order_by("id").values_list(*HEADER).iterator(chunk_size=2000)
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    # Pair names are slugs: safe in a header, and what a person recognises in a folder.
    filename = f"{run.pair.name}-run-{run.pk}-discrepancies.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response

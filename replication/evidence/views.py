"""The monthly report's page and CSV (thin: the report is built in report.py)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from replication.evidence.export import csv_text
from replication.evidence.freshness import parse_month
from replication.evidence.report import NoReport, build_report
from replication.models import BucketPair


def _report_or_404(request, name: str, month: str):
    pair = get_object_or_404(BucketPair, name=name)
    first_day = parse_month(month)
    if first_day is None:
        return None, _no_report(request, pair, f"{month!r} is not a month: give it as YYYY-MM.")
    try:
        return build_report(pair, first_day, timezone.now()), None
    except NoReport as problem:
        return None, _no_report(request, pair, str(problem))


def _no_report(request, pair: BucketPair, line: str):
    return render(request, "evidence/no_report.html", {"pair": pair, "line": line}, status=404)


@login_required
@require_GET
def report_page(request, name: str, month: str):
    report, refusal = _report_or_404(request, name, month)
    if refusal is not None:
        return refusal
    return render(request, "evidence/report.html", {"report": report})


@login_required
@require_GET
def report_csv(request, name: str, month: str):
    report, refusal = _report_or_404(request, name, month)
    if refusal is not None:
        return refusal
    response = HttpResponse(csv_text(report), content_type="text/csv; charset=utf-8")
    filename = f"{report.pair.name}-report-{report.label}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response

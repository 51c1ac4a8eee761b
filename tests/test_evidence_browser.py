"""The monthly report in a real browser (Debian's Chromium through Playwright): at 1,400 and
390 px, and printed to PDF on A4 and on US Letter. Screenshots go where the
dashboard's browser tests put theirs (the ``shots`` fixture)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from replication.demo import history, scenario
from replication.evidence.freshness import month_start, previous_month
from tests.factories import make_pair, record_events
from tests.test_dashboard_browser import (  # noqa: F401 - fixtures
    assert_fits,
    browser,
    page,
    phone,
    shots,
)

pytestmark = pytest.mark.slow

# Points per millimetre in a PDF's MediaBox.
PT_PER_MM = 72 / 25.4


def a_month_of(plan: scenario.PairPlan, now: datetime) -> None:
    """The demo's story for ``plan`` (its copies, runs and health), stored directly."""
    make_pair(
        name=plan.name,
        source_bucket=plan.source_bucket,
        source_prefix=plan.source_prefix,
        backup_bucket=plan.backup_bucket,
        grace_seconds=plan.grace_seconds,
    )
    told = history.plan_history(plan, now)
    from replication.models import BucketPair

    pair = BucketPair.objects.get(name=plan.name)
    for start in range(0, len(told.copies), 1000):
        record_events(
            pair,
            *[
                {
                    "key": copy.key,
                    "event_time": copy.event_time,
                    "started_at": copy.event_time,
                    "finished_at": copy.finished_at,
                    "status": copy.status,
                    "error_code": copy.error_code or None,
                    "error_message": copy.error_message or None,
                }
                for copy in told.copies[start : start + 1000]
            ],
        )
    history.record_story(told)


def checks_of_a_month(name: str, start: datetime) -> None:
    """Every protection check ok daily from the month's start, but versioning suspended
    from the 10th to the 12th (long reasons, to see them wrap)."""
    from replication.models import BucketPair, ProtectionCheck, ProtectionResult

    pair = BucketPair.objects.get(name=name)
    rows = []
    for day in range(28):
        at = start + timedelta(days=day)
        for check in ProtectionCheck.values:
            bad = check == "backup_versioning" and 9 <= day < 12
            rows.append(
                ProtectionResult(
                    pair=pair,
                    check_id=check,
                    state="critical" if bad else "ok",
                    reason="the backup bucket's versioning is suspended: overwritten and "
                    "deleted objects cannot be restored"
                    if bad
                    else f"{check} as required",
                    checked_at=at,
                    is_latest=False,
                )
            )
    ProtectionResult.objects.bulk_create(rows)


def log_in(tab, url: str) -> None:
    tab.goto(f"{url}/admin/login/?next=/")
    tab.fill("#id_username", "auditor")
    tab.fill("#id_password", "correct horse")
    tab.click("input[type=submit]")


def pdf_pages(pdf: bytes) -> list[tuple[float, float]]:
    """Each page's size in mm, read from the MediaBox entries Chromium writes."""
    import re

    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    return [(float(w) / PT_PER_MM, float(h) / PT_PER_MM) for w, h in boxes]


def test_last_months_report_reads_on_a_desktop_a_phone_and_on_paper(
    page,  # noqa: F811
    phone,  # noqa: F811
    shots,  # noqa: F811
    live_server,
    transactional_db,
    tmp_path,
):
    now = datetime.now(UTC)
    photos, _, invoices = scenario.PAIRS
    a_month_of(photos, now)
    a_month_of(invoices, now)
    User.objects.create_superuser("auditor", password="correct horse")
    first = previous_month(month_start(now.date()))
    month = f"{first:%Y-%m}"
    checks_of_a_month(invoices.name, datetime(first.year, first.month, 1, tzinfo=UTC))

    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/pairs/demo-invoices/report/{month}/")
    assert page.locator("h1").inner_text().startswith("demo-invoices, ")
    assert page.locator("#reconcile table tbody tr").count() >= 1  # the weekend's runs
    assert "in sync again at run #" in page.locator("#reconcile").inner_text()
    protection = page.locator("#protection")
    assert protection.locator("table").first.locator("tbody tr").count() == 7
    assert "the backup bucket's versioning is suspended" in protection.inner_text()
    page.screenshot(path=shots / "report.png", full_page=True)

    page.goto(f"{live_server.url}/pairs/demo-photos/")
    panel = page.locator("#freshness")
    assert panel.locator("rect.fresh-met, rect.fresh-missed").count() >= 2
    panel.screenshot(path=shots / "freshness.png")

    log_in(phone, live_server.url)
    phone.goto(f"{live_server.url}/pairs/demo-invoices/report/{month}/")
    assert_fits(phone, "report")
    phone.screenshot(path=shots / "report-390.png", full_page=True)
    phone.locator("#protection").screenshot(path=shots / "report-protection-390.png")

    page.goto(f"{live_server.url}/pairs/demo-invoices/report/{month}/")
    page.emulate_media(media="print")
    assert page.locator(".topbar").is_hidden() and page.locator(".report-tools").is_hidden()
    for paper, (width, height) in (("A4", (210, 297)), ("Letter", (215.9, 279.4))):
        pdf = page.pdf(format=paper, print_background=True)
        (tmp_path / f"report-{paper}.pdf").write_bytes(pdf)
        sizes = pdf_pages(pdf)
        assert 1 <= len(sizes) <= 4, (paper, len(sizes))
        assert all(abs(w - width) < 1 and abs(h - height) < 1 for w, h in sizes), sizes
    # Nothing wider than the printable width of the narrower paper (A4: 210 mm - 2 x 12 mm).
    page.set_viewport_size({"width": round((210 - 24) * 96 / 25.4), "height": 1000})
    assert_fits(page, "report, A4 width")

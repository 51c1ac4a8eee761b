"""The README's screenshots, taken of the seeded demo (`make screenshots`).

Debian's Chromium driven by Playwright (a development requirement, imported only here):
logged in as the demo user, the overview, a pair with open failures and a run that found
objects missing, at 1,400 px and on a phone at 390 px.
"""

import os
from collections.abc import Callable
from pathlib import Path

from replication.models import BucketPair, ReconcileRun, RestorePoint

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
# The viewer's zone in the pictures: not UTC, so that they show times localised.
TIMEZONE = "Europe/Paris"
# A page taken whole, or only its first screenful (the README's layout).
WHOLE_PAGE = {"overview": False, "pair": True, "run": True, "overview-390": True, "pair-390": False}
# Pictures of one panel of a page rather than of the page: what to wait for, what to take.
PANELS = {"restore": ("#restore .drill-verified", "#restore")}


def pages(pair_names: list[str]) -> dict[str, str]:
    """What each screenshot shows: the pair with the most open failures, and the latest run
    that found something missing (or the latest run)."""
    from replication.models import ObjectState

    pairs = BucketPair.objects.filter(name__in=pair_names)
    failing = max(
        pairs,
        key=lambda p: ObjectState.objects.open_failures().filter(pair=p).count(),
        default=None,
    )
    runs = ReconcileRun.objects.filter(pair__in=pairs, status=ReconcileRun.Status.SUCCEEDED)
    run = runs.filter(missing__gt=0).order_by("-id").first() or runs.order_by("-id").first()
    shown = {"overview": "/"}
    if failing is not None:
        shown["pair"] = f"/pairs/{failing.name}/"
    if run is not None:
        shown["run"] = f"/runs/{run.pk}/"
    point = RestorePoint.objects.filter(pair__in=pairs).select_related("pair").first()
    if point is not None:
        shown["restore"] = f"/pairs/{point.pair.name}/"
    return shown


def take(
    site: str,
    username: str,
    password: str,
    directory: Path,
    shown: dict[str, str],
    say: Callable[[str], None] = print,
) -> list[Path]:
    """Log in to ``site`` and save ``name.png`` (1,400 px) and ``name-390.png`` (phone) for
    each page of ``shown``; the files written."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise FileNotFoundError(f"{CHROMIUM} is missing: `apt-get install chromium`")
    # Playwright's sync API runs an event loop in this thread; Django must still allow ORM
    # calls from it (the caller's, not ours: we make none while it runs).
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for suffix, options in (
                ("", {"viewport": {"width": 1400, "height": 900}}),
                (
                    "-390",
                    {
                        "viewport": {"width": 390, "height": 844},
                        "device_scale_factor": 2,
                        "is_mobile": True,
                        "has_touch": True,
                    },
                ),
            ):
                context = browser.new_context(timezone_id=TIMEZONE, **options)
                page = context.new_page()
                page.goto(f"{site}/admin/login/?next=/")
                page.fill("#id_username", username)
                page.fill("#id_password", password)
                page.click("input[type=submit]")
                page.wait_for_load_state()
                for name, path in shown.items():
                    if suffix and name == "run":
                        continue  # the README shows the run page at full width only
                    page.goto(f"{site}{path}")
                    page.wait_for_load_state()
                    target = directory / f"{name}{suffix}.png"
                    if name in PANELS:  # loaded on its own, after the page
                        ready, panel = PANELS[name]
                        page.wait_for_selector(ready)
                        page.locator(panel).screenshot(path=target)
                    else:
                        page.screenshot(path=target, full_page=WHOLE_PAGE[f"{name}{suffix}"])
                    written.append(target)
                    say(f"{target}: {path} at {options['viewport']['width']} px")
                context.close()
        finally:
            browser.close()
    return written

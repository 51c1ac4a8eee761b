"""CI smoke test of the README's first command: `make demo` seeds, then the site shows it.

Runs `make demo SEED_ONLY=1` on free ports with a throw-away SQLite file (the demo's
embedded default, whatever DATABASE_URL/REDIS_URL CI exports), then serves that database,
logs in as the demo user and checks `/`, the three pairs, their events, a finished run, a
passed restore drill of each pair and the offer to restore demo-photos' overwrite.
"""

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ("demo-photos", "demo-logs", "demo-invoices")

COUNTS = """
import json, os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
django.setup()
from replication.models import BucketPair, CopyEvent, ReconcileRun
runs = ReconcileRun.objects.filter(status="succeeded").exclude(verdict="")
print(json.dumps({
    "events": {p.name: CopyEvent.objects.filter(pair=p).count() for p in BucketPair.objects.all()},
    "finished_runs": runs.count(),
}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail(message: str) -> None:
    print(f"demo smoke test FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    started = time.monotonic()
    web_port, s3_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="demo-smoke-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("AWS_")
    }
    env["DATABASE_URL"] = f"sqlite:///{workdir / 'demo.sqlite3'}"

    demo = subprocess.run(
        ["make", "demo", f"PORT={web_port}", f"S3_PORT={s3_port}", "SEED_ONLY=1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(demo.stdout)
    if demo.returncode != 0:
        print(demo.stderr[-5000:], file=sys.stderr)
        fail(f"make demo exited with {demo.returncode}")
    login = re.search(r"^Login: (\S+) / (\S+)$", demo.stdout, re.MULTILINE)
    if not login:
        fail("make demo printed no login")
    user, password = login.groups()
    seeded = time.monotonic() - started

    python = str(ROOT / ".venv" / "bin" / "python")
    counts = subprocess.run(
        [python, "-c", COUNTS], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    counts = json.loads(counts.stdout)
    for name in PAIRS:
        if not counts["events"].get(name):
            fail(f"pair {name} has no events: {counts['events']}")
    if not counts["finished_runs"]:
        fail("no finished reconcile run")

    server = subprocess.Popen(
        [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{web_port}"],
        cwd=ROOT,
        env={**env, "LOG_LEVEL": "WARNING"},
    )
    try:
        check_site(f"http://127.0.0.1:{web_port}", user, password)
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(
        f"demo smoke test passed: seeded in {seeded:.0f} s, events {counts['events']}, "
        f"{counts['finished_runs']} finished run(s)"
    )


def check_site(site: str, user: str, password: str) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    deadline = time.monotonic() + 60
    while True:
        try:
            opener.open(f"{site}/healthz", timeout=5).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                fail("the web server did not answer /healthz within 60 s")
            time.sleep(0.5)

    login_url = f"{site}/admin/login/?next=/"
    opener.open(login_url, timeout=30).read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": user, "password": password, "next": "/"}
    ).encode()
    request = urllib.request.Request(login_url, data=form, headers={"Referer": login_url})
    opener.open(request, timeout=30).read()

    # `/` follows its redirects; a login form instead of the page means the login failed.
    home = opener.open(f"{site}/", timeout=30)
    body = home.read().decode()
    if home.status != 200 or 'name="password"' in body:
        fail(f"GET / after logging in ended at {home.url} without the page")
    # The overview: one row per demo pair, and the verdict of a finished reconcile.
    for name in PAIRS:
        if f'href="/pairs/{name}/"' not in body:
            fail(f"pair {name} has no row on the overview")
    if not re.search(r'class="verdict verdict-(in_sync|out_of_sync|unproven)"', body):
        fail("no reconcile verdict on the overview")
    if "restore drill overdue" in body:
        fail("a demo pair reads 'restore drill overdue': the seed drills each pair")
    for name in PAIRS:
        page = opener.open(f"{site}/pairs/{name}/", timeout=30).read().decode()
        if "Recent events" not in page or "No copy reported yet" in page:
            fail(f"the page of {name} shows no events")
        panel = opener.open(f"{site}/pairs/{name}/restore/panel/", timeout=30).read().decode()
        if "Last verified restorable" not in panel:
            fail(f"the restore panel of {name} shows no passed restore drill")
        if name == "demo-photos" and "Something to restore" not in panel:
            fail("the restore panel of demo-photos does not offer to restore its overwrite")


if __name__ == "__main__":
    main()

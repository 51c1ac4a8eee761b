import logging
import random
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from replication.demo import scenario, seed
from replication.demo.scheduler import local_scheduler
from replication.demo.stack import Stack, StackError, bucket_help

TRICKLE_SECONDS = 2.0


class Command(BaseCommand):
    help = (
        "`make demo`: start the local S3 and the web server, seed three bucket pairs through "
        "the real Lambda handler and ingest API, reconcile them, play an overwrite gone wrong "
        "(offered for restore on the pair page), run a restore drill of each, then keep a "
        "trickle of events going until Ctrl-C. Each run starts the demo's pairs afresh."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument(
            "--seed-only", action="store_true", help="stop everything once seeded (for CI)"
        )
        parser.add_argument(
            "--screenshots",
            metavar="DIR",
            help="once seeded, save screenshots of its pages in DIR, then stop (`make "
            "screenshots`; needs Chromium and Playwright)",
        )
        parser.add_argument(
            "--incident",
            choices=["mass-delete"],
            help="after seeding, play an incident: mass-delete deletes 510 objects of demo-logs "
            "through the real handler, so the destructive-change guard trips and holds",
        )

    def handle(
        self,
        *args,
        port: int,
        seed_only: bool,
        screenshots: str | None = None,
        incident: str | None = None,
        **options,
    ):
        if settings.PRODUCTION:
            raise CommandError("refused in production: the demo writes made-up pairs")
        if not settings.EMBEDDED_S3:
            raise CommandError(
                "the demo runs against the local S3 only, but AWS_ENDPOINT_URL, AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID is set: unset them, or set EMBEDDED_S3=true"
            )
        started = time.monotonic()
        log_file = quiet_logging()
        key, password = seed.reset_database()
        self.stdout.write("Demo pairs, ingest key and user reset (other pairs are kept).")
        try:
            with Stack(log_file=log_file) as stack:
                if not stack.start_s3():
                    self.stdout.write(
                        f"Using the local S3 already running on port {settings.EMBEDDED_S3_PORT}"
                        " (the demo's buckets in it are emptied)."
                    )
                stack.start_web(port, quiet=True)
                site = f"http://127.0.0.1:{port}"
                demo = seed.Demo(f"{site}/api/v1/events", key, say=self._say)
                demo.seed()
                if incident == "mass-delete":
                    demo.mass_delete()
                self.stdout.write(
                    self.style.SUCCESS(f"Seeded in {time.monotonic() - started:.0f} s.")
                )
                self.stdout.write(
                    f"The scenario's expected failures and the servers' logs: {_shown(log_file)}"
                )
                login = f"Login: {scenario.DEMO_USER} / {password}"
                if seed_only or screenshots:
                    self.stdout.write(login)
                    if screenshots:
                        self._screenshots(site, password, Path(screenshots))
                    return
                self.stdout.write(bucket_help())
                every = sorted({plan.reconcile_every_minutes for plan in scenario.PAIRS})
                with local_scheduler(self.stdout.write):
                    self.stdout.write(
                        f"Dashboard: {site}/  (a write every {TRICKLE_SECONDS:.0f} s; each pair "
                        f"reconciled every {'/'.join(map(str, every))} min by the schedule). "
                        "Ctrl-C stops everything."
                    )
                    # Last, where the eye lands: what to open and how to log in.
                    self.stdout.write(login)
                    self._trickle(stack, demo)
        except StackError as error:
            raise CommandError(str(error)) from None
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _trickle(self, stack: Stack, demo: seed.Demo) -> None:
        # The reconciles are the schedule's (reconcile-due-pairs), run by the local scheduler.
        steps = scenario.trickle_steps(random.Random())  # noqa: S311  (made-up traffic)
        while all(process.poll() is None for _, process in stack.processes):
            demo.trickle(next(steps))
            time.sleep(TRICKLE_SECONDS)
        raise CommandError("a demo process exited; stopping the others")

    def _screenshots(self, site: str, password: str, directory: Path) -> None:
        from replication.demo import screenshots as camera

        shown = camera.pages([plan.name for plan in scenario.PAIRS])
        try:
            camera.take(site, scenario.DEMO_USER, password, directory, shown, say=self._say)
        except (ImportError, FileNotFoundError) as error:
            raise CommandError(f"no screenshots: {error}") from None

    def _say(self, line: str) -> None:
        self.stdout.write(f"  {line}")


def quiet_logging() -> Path:
    """Send every log record of this process to var/demo.log instead of the terminal.

    The scenario fails copies on purpose (AccessDenied, SlowDown) and the handler logs each
    as an error, as it should on Lambda; in the terminal they would bury the summary.
    """
    path = Path(settings.BASE_DIR) / "var" / "demo.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    return path


def _shown(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path

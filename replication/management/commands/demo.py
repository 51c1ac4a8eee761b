import random
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from replication.demo import scenario, seed
from replication.demo.stack import Stack, StackError, bucket_help

TRICKLE_SECONDS = 2.0
RECONCILE_EVERY_SECONDS = 120.0


class Command(BaseCommand):
    help = (
        "`make demo`: start the local S3 and the web server, seed three bucket pairs through "
        "the real Lambda handler and ingest API, reconcile them, then keep a trickle of events "
        "going until Ctrl-C. Each run starts the demo's pairs afresh."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument(
            "--seed-only", action="store_true", help="stop everything once seeded (for CI)"
        )
        parser.add_argument(
            "--incident",
            choices=["mass-delete"],
            help="after seeding, play an incident: mass-delete deletes 510 objects of demo-logs "
            "through the real handler, so the destructive-change guard trips and holds",
        )

    def handle(self, *args, port: int, seed_only: bool, incident: str | None = None, **options):
        if settings.PRODUCTION:
            raise CommandError("refused in production: the demo writes made-up pairs")
        if not settings.EMBEDDED_S3:
            raise CommandError(
                "the demo runs against the local S3 only, but AWS_ENDPOINT_URL, AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID is set: unset them, or set EMBEDDED_S3=true"
            )
        started = time.monotonic()
        key, password = seed.reset_database()
        self.stdout.write("Demo pairs, ingest key and user reset (other pairs are kept).")
        try:
            with Stack() as stack:
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
                self.stdout.write(f"Login: {scenario.DEMO_USER} / {password}")
                if seed_only:
                    return
                self.stdout.write(bucket_help())
                self.stdout.write(
                    f"Dashboard: {site}/  (a write every {TRICKLE_SECONDS:.0f} s, a reconcile "
                    f"every {RECONCILE_EVERY_SECONDS:.0f} s). Ctrl-C stops everything."
                )
                self._trickle(stack, demo)
        except StackError as error:
            raise CommandError(str(error)) from None
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _trickle(self, stack: Stack, demo: seed.Demo) -> None:
        steps = scenario.trickle_steps(random.Random())  # noqa: S311  (made-up traffic)
        pairs = [plan.name for plan in scenario.PAIRS]
        last_reconcile = time.monotonic()
        while all(process.poll() is None for _, process in stack.processes):
            demo.trickle(next(steps))
            if time.monotonic() - last_reconcile >= RECONCILE_EVERY_SECONDS:
                demo.reconcile(pairs[0])
                pairs.append(pairs.pop(0))
                last_reconcile = time.monotonic()
            time.sleep(TRICKLE_SECONDS)
        raise CommandError("a demo process exited; stopping the others")

    def _say(self, line: str) -> None:
        self.stdout.write(f"  {line}")

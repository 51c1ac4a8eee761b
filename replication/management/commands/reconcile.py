import gc
import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from replication import s3
from replication.models import BucketPair, ReconcileRun
from replication.reconcile import inline, reaper
from replication.reconcile import run as reconcile
from replication.reconcile.wording import one_line, outcome, verdict_line


class ProgressBar:
    """One line on a terminal, redrawn at most ten times a second; nothing when piped."""

    WIDTH = 30

    def __init__(self, stream, expected: int, clock=time.monotonic):
        self.stream = stream
        self.enabled = stream.isatty()
        self.expected = expected
        self.clock = clock
        self.scanned = 0
        self.started = self.drawn_at = clock()

    def advance(self, objects: int) -> None:
        self.scanned += objects
        now = self.clock()
        if self.enabled and now - self.drawn_at >= 0.1:
            self.drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = f"{now - self.started:6.1f} s"
        if self.expected:
            # The estimate is the previous run's size: clamp, the bucket may have grown.
            done = min(self.scanned / self.expected, 0.99)
            filled = int(done * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            line = f"[{bar}] {done:4.0%}  {self.scanned:,} objects  {elapsed}"
        else:
            line = f"{self.scanned:,} objects scanned  {elapsed}"
        self.stream.write(f"\r{line}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Compare a pair's source and backup now, in this process, and print what differs. "
        "Exits 0 when the comparison finished (in sync or not), 1 with the reason otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument("pair", help="the pair's name")
        parser.add_argument(
            "--repair",
            action="store_true",
            help="copy missing and changed objects (and delete extras if the pair mirrors deletes)",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        pair = BucketPair.objects.filter(name=options["pair"]).first()
        if pair is None:
            raise CommandError(f"no pair named {options['pair']!r} (see manage.py add_pair)")
        run, created = reconcile.request_run(
            pair, trigger=ReconcileRun.Trigger.MANUAL, repair=options["repair"]
        )
        if not created:
            raise CommandError(
                f"pair {pair.name!r} already has reconcile #{run.pk} {run.status}; "
                "wait for it to finish"
            )

        previous = (
            ReconcileRun.objects.filter(pair=pair, status=ReconcileRun.Status.SUCCEEDED)
            .order_by("-created_at")
            .values_list("objects_scanned", flat=True)
            .first()
        )
        bar = ProgressBar(sys.stderr, expected=previous or 0)
        if bar.enabled:
            # On a terminal, say which S3 before the bar; failures always name it (below).
            sys.stderr.write(f"Reconciling {pair.name} in {s3.describe()}\n")
        thresholds = inline.spare_the_garbage_collector(pair.region)
        try:
            inline.reconcile_inline(run.pk, on_progress=bar.advance)
        except KeyboardInterrupt:
            reaper.fail_run(run.pk, "interrupted by the operator (Ctrl-C)")
            raise CommandError("interrupted; the run is saved as failed") from None
        finally:
            bar.close()
            gc.unfreeze()  # as it was (the command may run inside a longer process, tests)
            gc.set_threshold(*thresholds)
        run.refresh_from_db()

        if run.status != ReconcileRun.Status.SUCCEEDED:
            # Exactly one line, on stderr, whatever the output format (a DESIGN.md contract).
            # Failures name the S3 they talked to: the usual cause is the wrong one.
            raise CommandError(one_line(f"{outcome(run)} (S3: {s3.describe()})"))
        if options["json"]:
            self.stdout.write(json.dumps(summary(run)))
        else:
            self.stdout.write(describe(run))


def summary(run: ReconcileRun) -> dict:
    """The --json object; its keys are a contract (docs/reconcile.md). The counts are what
    the listing found; a repair adds what it did, and ``verdict_text`` reads as the pages
    do ("in sync · 12 in flight", "in sync after repair: 52 missing copied")."""
    values = {
        "run": run.pk,
        "status": run.status,
        "source_objects": run.source_objects,
        "destination_objects": run.destination_objects,
        "missing": run.missing,
        "extra": run.extra,
        "mismatched": run.mismatched,
        "unverified": run.unverified,
        "in_flight": run.in_flight,
        "kept": run.kept,
        "repaired": run.repaired,
        "duration_s": run.duration_s,
        "verdict": run.verdict or None,
        "verdict_text": verdict_line(run) if run.verdict else None,
    }
    if run.repair:
        values |= {
            "repair_failed": run.repair_failed,
            "repaired_missing": run.repaired_missing,
            "repaired_mismatched": run.repaired_mismatched,
            "extras_deleted": run.extras_deleted,
        }
    return values


def describe(run: ReconcileRun) -> str:
    """The verdict first, then the figures; keys are shown as the source names them."""
    lines = [
        outcome(run),
        f"  finished in {run.duration_s:.1f} s",
        f"  source {run.source_objects:,} objects, {_size(run.source_bytes)}; "
        f"backup {run.destination_objects:,} objects, {_size(run.destination_bytes)}",
        f"  in sync {run.in_sync:,}, missing {run.missing:,}, extra {run.extra:,}, "
        f"mismatched {run.mismatched:,}, unverified {run.unverified:,}, "
        f"in flight {run.in_flight:,}, kept {run.kept:,}",
    ]
    if run.checksum_settled:
        lines.append(
            f"  {run.checksum_settled:,} of these settled by checksums (the listing could not)"
        )
    if run.repair:
        failed = f", {run.repair_failed:,} failed" if run.repair_failed else ""
        deleted = f", {run.extras_deleted:,} extras deleted" if run.extras_deleted else ""
        lines.append(
            f"  repair: {run.repaired_missing:,} missing and {run.repaired_mismatched:,} "
            f"mismatched copied{deleted}{failed}"
        )
    if run.discrepancies_stored < run.differences:
        lines.append(f"  {run.discrepancies_stored:,} of the differing keys are listed on the run")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"

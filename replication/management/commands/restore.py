import getpass
import json
import socket
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from replication import s3
from replication.management.commands.reconcile import ProgressBar, _size
from replication.models import BucketPair, RestoreJob
from replication.restore import job as restores
from replication.restore.plan import Totals, parse_time


class Command(BaseCommand):
    help = (
        "Bring a pair's backup back as it was at a moment, into a target: --to BUCKET[/PREFIX] "
        "or --into-source. Prints the plan first. Exits 0 only when nothing failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("pair", help="the pair's name")
        parser.add_argument(
            "--at", required=True, help="ISO 8601 (UTC when it has no offset), or 'now'"
        )
        parser.add_argument(
            "--prefix", default="", help="only keys under it (as the source names keys)"
        )
        parser.add_argument("--to", default="", help="BUCKET[/PREFIX] the objects land in")
        parser.add_argument(
            "--into-source", action="store_true", help="write back into the pair's source"
        )
        parser.add_argument("--yes", action="store_true", help="confirm --into-source")
        parser.add_argument("--dry-run", action="store_true", help="print the plan; copy nothing")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        pair = BucketPair.objects.filter(name=options["pair"]).first()
        if pair is None:
            raise CommandError(f"no pair named {options['pair']!r} (see manage.py add_pair)")
        now = timezone.now()
        try:
            at = parse_time(options["at"], now)
            request = restores.make_request(
                pair,
                at=at,
                prefix=options["prefix"],
                to=options["to"],
                into_source=options["into_source"],
            )
            client = s3.client(pair.region)
            lister = s3.listing_client(pair.region)
            restores.check(client, request, now)
            bar = ProgressBar(sys.stderr, expected=0)
            try:
                totals = restores.count_plan(lister, request, on_key=lambda: bar.advance(1))
            finally:
                bar.close()
        except (ValueError, restores.RestoreRefused) as exc:
            raise CommandError(str(exc)) from None

        if options["dry_run"]:
            self._print_plan(request, totals, options["json"])
            return
        if request.into_source and not options["yes"]:
            raise CommandError(
                f"--into-source overwrites {totals.objects:,} objects in "
                f"{request.target.location}: run again with --yes to confirm"
            )
        if not options["json"]:
            self.stdout.write(_plan_lines(request, totals))
        try:
            job = restores.create_job(request, totals, requested_by_name=_operator())
        except restores.RestoreRefused as exc:
            raise CommandError(str(exc)) from None
        bar = ProgressBar(sys.stderr, expected=totals.objects)
        try:
            job = restores.run_job(job.pk, s3=client, on_progress=bar.advance)
        except KeyboardInterrupt:
            restores.fail_job(job.pk, "interrupted by the operator (Ctrl-C)")
            raise CommandError(
                "interrupted; the restore is saved as failed with what it restored"
            ) from None
        finally:
            bar.close()
        if job is None:  # taken by a worker in between: nothing of ours to report
            raise CommandError("the restore was taken over by a worker; see the job's page")
        if options["json"]:
            self.stdout.write(json.dumps(summary(job)))
        else:
            self.stdout.write(describe(job))
        if job.status == RestoreJob.Status.CANCELLED:
            raise CommandError(cancelled_line(job))
        if job.status != RestoreJob.Status.SUCCEEDED:
            raise CommandError(job.error.splitlines()[0] if job.error else "the restore failed")

    def _print_plan(self, request, totals: Totals, as_json: bool) -> None:
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "restore": None,
                        "status": "planned",
                        "objects": totals.objects,
                        "bytes": totals.bytes,
                        "skipped": totals.deleted,
                        "absent": totals.absent,
                        "at": request.at.isoformat(),
                        "target": request.target.location,
                    }
                )
            )
        else:
            self.stdout.write(_plan_lines(request, totals) + "\n(dry run: nothing copied)")


def _plan_lines(request, totals: Totals) -> str:
    at = request.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "\n".join(
        [
            f"Restore {request.pair.name} {request.prefix or '(all keys)'} as at {at} "
            f"into {request.target.location}",
            f"  {totals.objects:,} objects, {_size(totals.bytes)}",
            f"  {totals.deleted:,} keys deleted then (skipped), "
            f"{totals.absent:,} keys that did not exist then",
        ]
    )


def _operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in a container: the host still says where it ran
        user = "?"
    return f"{user}@{socket.gethostname()} (command line)"[:150]


def summary(job: RestoreJob) -> dict:
    """The --json object; its keys are a contract (DESIGN.md, "Restore")."""
    return {
        "restore": job.pk,
        "status": job.status,
        "objects": job.planned_objects,
        "bytes": job.planned_bytes,
        "restored": job.restored,
        "failed": job.failed,
        "skipped": job.skipped,
        "duration_s": job.duration_s,
    }


def cancelled_line(job: RestoreJob) -> str:
    at = job.cancelled_at.strftime("%Y-%m-%d %H:%M:%S UTC") if job.cancelled_at else "?"
    return (
        f"restore #{job.pk} cancelled by {job.cancelled_by_name or '?'} at {at}: "
        f"{job.restored:,} of {job.planned_objects:,} restored"
    )


def describe(job: RestoreJob) -> str:
    if job.status == RestoreJob.Status.CANCELLED:
        return cancelled_line(job)
    verdict = "restored" if job.status == RestoreJob.Status.SUCCEEDED else "FAILED"
    lines = [
        f"restore #{job.pk} {verdict}: {job.restored:,} of {job.planned_objects:,} objects, "
        f"{_size(job.bytes_restored)} in {job.duration_s or 0:.1f} s",
    ]
    if job.failed:
        lines.append(f"  {job.failed:,} failed (every object's outcome is on the job)")
    if job.skipped:
        lines.append(f"  {job.skipped:,} keys were deleted at the time (skipped)")
    return "\n".join(lines)

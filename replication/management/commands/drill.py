import json

from django.core.management.base import BaseCommand, CommandError

from replication.management.commands.reconcile import _size
from replication.management.commands.restore import _operator
from replication.models import BucketPair, RestoreDrill
from replication.restore import drill as drills


class Command(BaseCommand):
    help = (
        "Restore a sample of a pair's backup to scratch, read it back, compare it with the "
        "source, delete it. Exits 0 when the drill passed."
    )

    def add_arguments(self, parser):
        parser.add_argument("pair", help="the pair's name")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        pair = BucketPair.objects.filter(name=options["pair"]).first()
        if pair is None:
            raise CommandError(f"no pair named {options['pair']!r} (see manage.py add_pair)")
        try:
            drill = drills.start_drill(pair, requested_by_name=_operator())
        except drills.DrillRefused as exc:
            raise CommandError(str(exc)) from None
        try:
            drill = drills.run_drill(drill.pk)
        except KeyboardInterrupt:
            RestoreDrill.objects.filter(pk=drill.pk).update(
                status=RestoreDrill.Status.ERROR, error="interrupted by the operator (Ctrl-C)"
            )
            raise CommandError("interrupted; the drill is saved as error") from None
        if options["json"]:
            self.stdout.write(json.dumps(summary(drill)))
        else:
            self.stdout.write(describe(drill))
        if drill.status != RestoreDrill.Status.PASSED:
            raise CommandError(f"restore drill {drill.status}: {drill.error}".splitlines()[0])


def summary(drill: RestoreDrill) -> dict:
    """The --json object; its keys are a contract (DESIGN.md, "Restore")."""
    return {
        "drill": drill.pk,
        "status": drill.status,
        "objects": drill.sampled,
        "verified": drill.verified,
        "bytes": drill.sampled_bytes,
        "duration_s": drill.duration_s,
        "throughput_bytes_s": drill.throughput_bytes_s,
    }


def describe(drill: RestoreDrill) -> str:
    if drill.status == RestoreDrill.Status.PASSED:
        rate = f" ({_size(drill.throughput_bytes_s or 0)}/s)"
        return (
            f"restore drill #{drill.pk} passed: {drill.verified} of {drill.sampled} objects, "
            f"{_size(drill.sampled_bytes)} restored and verified in {drill.duration_s:.1f} s{rate}"
        )
    return f"restore drill #{drill.pk} {drill.status}: {drill.error}"

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from replication import s3
from replication.models import BucketPair
from replication.protection import posture, store


class Command(BaseCommand):
    help = (
        "Check a pair's protection now (its buckets' versioning, lifecycle rules, Object Lock, "
        "public access, policy, event trigger and encryption), keep the results and print "
        "them. Exits 0 whatever the checks found; 1 with one line when it could not run."
    )

    def add_arguments(self, parser):
        parser.add_argument("pair", help="the pair's name")
        parser.add_argument(
            "--json",
            action="store_true",
            help='print {"pair": ..., "checks": [{"id", "state", "reason"}]}',
        )

    def handle(self, *args, pair, json, **options):
        try:
            found = BucketPair.objects.filter(name=pair).first()
        except DatabaseError as exc:
            raise CommandError(f"the database cannot be read: {exc}".splitlines()[0]) from None
        if found is None:
            raise CommandError(f"no pair named {pair!r}")
        if not json:
            self.stderr.write(f"S3: {s3.describe()}")
        checks = store.run_checks(found)
        if json:
            self.stdout.write(posture.as_json(found.name, checks))
            return
        width = max(len(c.id.value) for c in checks)
        for check in checks:
            self.stdout.write(f"{check.id.value:<{width}}  {check.state.value:<8}  {check.reason}")
            if check.fix:
                self.stdout.write(f"{'':<{width}}  {'':<8}  fix: {check.fix}")
            if check.detail and sys.stdout.isatty():
                self.stdout.write(check.detail)

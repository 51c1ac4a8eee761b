import json

from django.core.management.base import BaseCommand, CommandError

from replication.models import IngestKey


class Command(BaseCommand):
    help = "Create an ingest key for a Lambda's reports and print its secret, this once."

    def add_arguments(self, parser):
        parser.add_argument("name", help="what the key is for, e.g. the function's name")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("the key's name must be 1 to 100 characters")
        if IngestKey.objects.filter(name=name).exists():
            raise CommandError(f"an ingest key named {name!r} already exists")
        key = IngestKey.objects.create(name=name)
        if options["json"]:
            self.stdout.write(
                json.dumps({"name": key.name, "key_id": key.key_id, "secret": key.secret})
            )
            return
        self.stdout.write(f"REPORT_KEY_ID={key.key_id}")
        self.stdout.write(f"REPORT_SECRET={key.secret}")
        self.stderr.write("The secret is shown this once; store it with the Lambda's settings.")

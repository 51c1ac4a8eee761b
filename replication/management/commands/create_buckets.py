from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from replication import s3
from replication.buckets import bucket_name_problem


class Command(BaseCommand):
    help = "Create buckets (in the local S3 on a local setup); existing ones are left as they are."

    def add_arguments(self, parser):
        parser.add_argument("buckets", nargs="+", metavar="BUCKET")
        parser.add_argument("--versioned", action="store_true", help="turn on versioning")

    def handle(self, *args, buckets, versioned, **options):
        for name in buckets:
            problem = bucket_name_problem(name)
            if problem:
                raise CommandError(f"{name!r} is not a valid S3 bucket name: it {problem}")
        self.stderr.write(f"S3: {s3.describe()}")
        client = s3.client()
        for name in buckets:
            try:
                # In us-east-1, creating a bucket one owns already succeeds: look first.
                client.head_bucket(Bucket=name)
                verb = "Already there:"
            except ClientError:
                verb = "Created"
            try:
                if verb == "Created":
                    client.create_bucket(Bucket=name)
            except (ClientError, BotoCoreError) as error:
                raise CommandError(f"{name}: {error}") from None
            if versioned:
                client.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": "Enabled"}
                )
            self.stdout.write(f"{verb} s3://{name}")

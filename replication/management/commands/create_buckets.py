from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from replication import s3
from replication.buckets import bucket_name_problem
from replication.protection.local import protect_bucket


class Command(BaseCommand):
    help = (
        "Create buckets (in the local S3 on a local setup), set up as a protected pair's are: "
        "versioning, all four public-access blocks and an object-event notification. Existing "
        "buckets get the same settings; their objects are left as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument("buckets", nargs="+", metavar="BUCKET")
        parser.add_argument(
            "--versioned", action="store_true", help="turn on versioning (the default now)"
        )
        parser.add_argument(
            "--unversioned", action="store_true", help="leave versioning off (to see the warning)"
        )

    def handle(self, *args, buckets, versioned, unversioned, **options):
        if versioned and unversioned:
            raise CommandError("--versioned and --unversioned contradict each other")
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
                protect_bucket(client, name, versioning=not unversioned)
            except (ClientError, BotoCoreError) as error:
                raise CommandError(f"{name}: {error}") from None
            self.stdout.write(f"{verb} s3://{name}")

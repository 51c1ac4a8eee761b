"""Build the deployable zip of the Lambda replicator.

The zip holds lambda_function.py at its root (handler ``lambda_function.lambda_handler``) and
nothing else: boto3 and botocore come with the Lambda Python runtime. Entries carry a fixed
timestamp and mode, so the same source always gives the same bytes, and a deployment tool that
compares hashes only updates the function when the code really changed.
"""

import hashlib
import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand

from replication import lambda_function

DEFAULT_OUTPUT = Path("build") / "backupsite-lambda.zip"
HANDLER = "lambda_function.lambda_handler"
# Zip timestamps cannot predate 1980; any fixed value makes the archive reproducible.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def build_zip(output: Path) -> str:
    """Write the zip to ``output`` and return its SHA-256 in hex."""
    source = Path(lambda_function.__file__).read_bytes()
    output.parent.mkdir(parents=True, exist_ok=True)
    entry = zipfile.ZipInfo("lambda_function.py", date_time=FIXED_TIME)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o100644 << 16  # a regular file, readable by the runtime's user
    with zipfile.ZipFile(output, "w") as archive:
        archive.writestr(entry, source)
    return hashlib.sha256(output.read_bytes()).hexdigest()


class Command(BaseCommand):
    help = "Build the Lambda deployment zip (lambda_function.py at its root)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            type=Path,
            default=DEFAULT_OUTPUT,
            metavar="FILE",
            help=f"where to write the zip (default {DEFAULT_OUTPUT})",
        )

    def handle(self, *args, output: Path, **options):
        digest = build_zip(output)
        self.stdout.write(f"Wrote {output} ({output.stat().st_size} bytes)")
        self.stdout.write(f"Handler: {HANDLER}")
        self.stdout.write(f"SHA-256: {digest}")

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from replication import s3
from replication.demo.stack import bucket_help


class Command(BaseCommand):
    help = (
        "Serve the local S3 (moto, in memory) on 127.0.0.1:EMBEDDED_S3_PORT until stopped. "
        "`make run` and `make demo` start it; run it alone for the Procfile stack."
    )

    def add_arguments(self, parser):
        parser.add_argument("--quiet", action="store_true", help="do not print how to use it")

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("refused in production: the local S3 keeps data in memory only")
        port = settings.EMBEDDED_S3_PORT
        try:
            server = s3.make_local_s3_server(port)
        except OSError as error:
            raise CommandError(
                f"cannot listen on 127.0.0.1:{port} ({error.strerror}): a local S3 may be "
                "running already; choose another port with EMBEDDED_S3_PORT"
            ) from None
        if not options["quiet"]:
            self.stdout.write(bucket_help())
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

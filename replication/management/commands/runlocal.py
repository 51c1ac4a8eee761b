from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from replication.demo.scheduler import local_scheduler
from replication.demo.stack import Stack, StackError, bucket_help


class Command(BaseCommand):
    help = (
        "`make run`: the local S3 (moto) on EMBEDDED_S3_PORT and the development web server, "
        "until Ctrl-C. Every manage.py command of this setup uses the same S3."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")

    def handle(self, *args, port: int, **options):
        if settings.PRODUCTION:
            raise CommandError("refused in production: serve with gunicorn (see the Procfile)")
        try:
            with Stack() as stack:
                started = stack.start_s3()
                if not started:
                    self.stdout.write(
                        f"Using the local S3 already running on port {settings.EMBEDDED_S3_PORT}."
                    )
                self.stdout.write(bucket_help())
                stack.start_web(port, reload=True)
                with local_scheduler(self.stdout.write):
                    self.stdout.write(
                        f"Serving http://127.0.0.1:{port}/ (admin: /admin/). Ctrl-C stops it all."
                    )
                    stack.wait()
        except StackError as error:
            raise CommandError(str(error)) from None
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

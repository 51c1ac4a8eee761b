from django.core.management.base import BaseCommand, CommandError

from replication.management.commands.restore import _operator, cancelled_line
from replication.models import RestoreJob
from replication.restore import job as restores


class Command(BaseCommand):
    help = (
        "Cancel a queued or running restore: its worker stops copying within seconds, what it "
        "restored stays recorded, and its target is free for another restore."
    )

    def add_arguments(self, parser):
        parser.add_argument("restore", type=int, help="the restore's number (its page's #)")

    def handle(self, *args, **options):
        job = RestoreJob.objects.filter(pk=options["restore"]).first()
        if job is None:
            raise CommandError(f"no restore #{options['restore']}")
        if not restores.cancel_job(job.pk, by_name=_operator()):
            job.refresh_from_db()
            raise CommandError(f"restore #{job.pk} had already ended ({job.status})")
        job.refresh_from_db()
        self.stdout.write(cancelled_line(job))

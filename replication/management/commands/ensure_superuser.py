import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "For local runs: create the superuser 'admin' with a random password, printed once, "
        "unless a superuser exists already. Refused in production."
    )

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("refused in production: use createsuperuser")
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(
            self.style.SUCCESS(f"Created superuser 'admin' with password {password!r}")
            + " (shown once; change it in the admin)."
        )

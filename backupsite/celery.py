"""The Celery app. Settings come from Django's settings, prefixed CELERY_."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")

app = Celery("backupsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="backupsite.ping")
def ping() -> str:
    """Round trip used by the worker smoke test and by operators checking a worker is alive."""
    return "pong"

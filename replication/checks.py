"""System checks: configuration problems surface at startup, with ids, not at request time."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_configuration(app_configs, **kwargs):
    problems = []
    if settings.PRODUCTION and settings.EMBEDDED_S3:
        problems.append(
            Warning(
                "EMBEDDED_S3 is on in production: reconciles would read an in-process moto "
                "server, not your buckets.",
                hint="Unset EMBEDDED_S3 and give AWS credentials or AWS_ENDPOINT_URL.",
                id="replication.W001",
            )
        )
    if settings.PRODUCTION and not settings.REDIS_URL:
        # Without a broker a reconcile runs inside the web request: a worker timeout kills it
        # mid-run, and with no beat nothing reaps it until someone asks for the pair again.
        problems.append(
            Error(
                "REDIS_URL is not set in production: reconciles would run inside web requests, "
                "where a worker timeout kills them, with no beat to reap or schedule them.",
                hint="Set REDIS_URL and run a Celery worker and beat.",
                id="replication.E002",
            )
        )
    if settings.PRODUCTION and not settings.METRICS_TOKEN:
        problems.append(
            Warning(
                "METRICS_TOKEN is not set: /metrics, which names every pair and its state, "
                "answers anyone.",
                hint="Set METRICS_TOKEN and give it to Prometheus as a bearer token.",
                id="replication.W003",
            )
        )
    return problems

"""System checks: configuration problems surface at startup, with ids, not at request time."""

from django.conf import settings
from django.core.checks import Warning, register


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
        problems.append(
            Warning(
                "REDIS_URL is not set: reconciles run inside web requests instead of on workers.",
                hint="Set REDIS_URL and run a Celery worker and beat.",
                id="replication.W002",
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

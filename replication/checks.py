"""System checks: configuration problems surface at startup, with ids, not at request time."""

import ipaddress
from urllib.parse import urlsplit

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
    if settings.PRODUCTION:
        problems += site_url_problems(settings.SITE_URL)
    short = [
        name
        for name in (
            "RECONCILE_RUN_RETENTION_DAYS",
            "ALERT_HISTORY_RETENTION_DAYS",
            "PROTECTION_RESULT_RETENTION_DAYS",
        )
        if getattr(settings, name) < EVIDENCE_DAYS
    ]
    if short:
        problems.append(
            Warning(
                f"{' and '.join(short)} below {EVIDENCE_DAYS} days: the monthly report "
                "covers this month and the twelve before, and would miss what retention "
                "removed.",
                hint=f"Keep them at least {EVIDENCE_DAYS} (the default).",
                id="replication.W006",
            )
        )
    return problems


# Thirteen months: the evidence report's month and the twelve before it.
EVIDENCE_DAYS = 396


def site_url_problems(site_url: str) -> list[Error]:
    """SITE_URL is the REPORT_URL the admin tells Lambdas to use: in production it must be
    the site's public HTTPS address. Over http:// the site's redirect to HTTPS would turn each
    report into a GET, and a localhost address would be the Lambda's own machine."""
    parts = urlsplit(site_url)
    problems = []
    if parts.scheme != "https":
        problems.append(
            Error(
                f"SITE_URL {site_url!r} is not an https:// address: the Lambda's REPORT_URL "
                "shown in the admin is built from it, and reports sent over http:// are "
                "redirected, then refused, or travel in clear.",
                hint="Set SITE_URL to the address people and Lambdas use, "
                "e.g. https://backups.example.com.",
                id="replication.E004",
            )
        )
    if _is_local(parts.hostname or ""):
        problems.append(
            Error(
                f"SITE_URL {site_url!r} points at this machine: a Lambda given the REPORT_URL "
                "built from it would report to itself, and alert links would lead nowhere.",
                hint="Set SITE_URL to the site's public address, e.g. https://backups.example.com.",
                id="replication.E005",
            )
        )
    return problems


def _is_local(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in ("", "localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified

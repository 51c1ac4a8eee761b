"""The site's WSGI app plus /bench/floor, the ingest benchmark's floor (bench/bench_ingest.py).

/bench/floor does what POST /api/v1/events does before it touches the database: checks the
body size, the timestamp and the HMAC signature (with the secret from BENCH_FLOOR_SECRET),
parses and validates the batch, and answers 202. Served by the same gunicorn as the real
endpoint, it measures what the web stack alone costs; never deploy it.
"""

import os
import time

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
application = get_wsgi_application()

from backupsite import urls as site_urls  # noqa: E402 (needs the app loaded)
from replication.ingest import schema, views  # noqa: E402
from replication.ingest.signing import (  # noqa: E402
    SignatureError,
    check_freshness,
    parse_timestamp,
    verify,
)

SECRET = os.environ["BENCH_FLOOR_SECRET"]


@csrf_exempt
@require_POST
@views.body_within_limit
def floor(request: HttpRequest) -> JsonResponse:
    try:
        timestamp = parse_timestamp(request.headers.get("X-Backup-Timestamp"))
        check_freshness(timestamp, time.time(), settings.INGEST_CLOCK_SKEW_SECONDS)
        verify(SECRET, str(timestamp), request.headers.get("X-Backup-Signature"), request.body)
    except SignatureError as refusal:
        return views.error(401, str(refusal))
    try:
        events = schema.parse_batch(request.body, max_events=settings.INGEST_MAX_EVENTS)
    except schema.InvalidBatch as refusal:
        return views.error(400, str(refusal))
    return JsonResponse({"accepted": len(events), "duplicates": 0, "rejected": []}, status=202)


site_urls.urlpatterns.append(path("bench/floor", floor))

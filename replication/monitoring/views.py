"""/metrics, /healthz and /badge/<token>.svg: what machines and READMEs read, without login.

Thin: the work is in metrics.py, probes.py and badges.py.
"""

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import patch_cache_control
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from replication.models import BucketPair
from replication.monitoring import badges, metrics, probes
from replication.status.facts import pair_health

BADGE_MAX_AGE_SECONDS = 60


def _bearer_token_ok(request: HttpRequest, expected: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # Compared in constant time, so the token cannot be guessed a character at a time.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    )


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token and not _bearer_token_ok(request, token):
        response = HttpResponse("401 Unauthorized: bearer token required\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every part answers; 503 naming those that do not."""
    parts = probes.check()
    failing = [name for name, ok in parts.items() if not ok]
    body = {
        "status": "unavailable" if failing else "ok",
        **{name: "ok" if ok else "unreachable" for name, ok in parts.items()},
    }
    response = JsonResponse(body, status=503 if failing else 200)
    patch_cache_control(response, no_store=True)
    return response


@require_GET
def badge(request: HttpRequest, token: str) -> HttpResponse:
    found = pair_health(BucketPair.objects.filter(badge_token=token))
    if not found:
        raise Http404("no such badge")
    item = found[0]
    drawn = badges.badge(item.pair.name, item.health.state, item.health.reason)
    response = render(
        request,
        "badges/pair.svg",
        {"badge": drawn, "message_half": drawn.message_width // 2},
        content_type="image/svg+xml; charset=utf-8",
    )
    patch_cache_control(response, max_age=BADGE_MAX_AGE_SECONDS, public=True)
    return response

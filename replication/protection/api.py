"""GET /api/v1/guard and GET /api/v1/pairs/<name>/guard: the holds the Lambda reads.

Signed like ingest, over an empty body (X-Backup-Key, X-Backup-Timestamp,
X-Backup-Signature); a key sees only the pairs it may report on.
"""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from replication.ingest.views import database_errors_as_503, error, signed_by_ingest_key
from replication.models import BucketPair, GuardHold
from replication.protection import guard


def _hold(hold: GuardHold) -> dict:
    return {
        "pair": hold.pair.name,
        "source": hold.pair.source_location,
        "backup": hold.pair.backup_location,
        "since": hold.since.isoformat(),
        "reason": hold.reason,
    }


@csrf_exempt  # authenticated by signature, never by cookie
@require_GET
@database_errors_as_503
@signed_by_ingest_key
def holds(request: HttpRequest) -> JsonResponse:
    found = guard.open_holds(request.ingest_key.scope)
    return JsonResponse({"holds": [_hold(hold) for hold in found]})


@csrf_exempt
@require_GET
@database_errors_as_503
@signed_by_ingest_key
def pair_hold(request: HttpRequest, name: str) -> JsonResponse:
    scope = request.ingest_key.scope
    pair = BucketPair.objects.filter(name=name).first()
    if pair is None or (scope is not None and pair.pk not in scope):
        return error(404, f"no pair named {name!r} for this key")
    hold = guard.open_holds([pair.pk]).first()
    return JsonResponse(
        {
            "pair": pair.name,
            "hold": hold is not None,
            "since": hold.since.isoformat() if hold else None,
            "reason": hold.reason if hold else "",
        }
    )

"""The guard's API, read by the Lambda; signed like ingest (X-Backup-Key, X-Backup-Timestamp,
X-Backup-Signature), and a key sees only the pairs it may report on.

- GET /api/v1/guard and GET /api/v1/pairs/<name>/guard (over an empty body): the holds.
  A hold says ``restoring`` while a restore into the pair's source may still see its
  writes copied back;
- POST /api/v1/pairs/<name>/restored: of the objects named (key and ETag), those a restore
  wrote into the source: the Lambda copies them even while the pair holds.
"""

import json

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from replication.ingest.schema import MAX_ETAG_CHARS, MAX_KEY_BYTES
from replication.ingest.views import (
    body_within_limit,
    database_errors_as_503,
    error,
    signed_by_ingest_key,
)
from replication.models import BucketPair, GuardHold
from replication.protection import guard
from replication.restore import writes

# Objects one lookup may name: an invocation's records (SQS hands at most 10,000).
MAX_RESTORED_OBJECTS = 10_000


def _hold(hold: GuardHold, restoring: set[int]) -> dict:
    return {
        "pair": hold.pair.name,
        "source": hold.pair.source_location,
        "backup": hold.pair.backup_location,
        "since": hold.since.isoformat(),
        "reason": hold.reason,
        "restoring": hold.pair_id in restoring,
    }


@csrf_exempt  # authenticated by signature, never by cookie
@require_GET
@database_errors_as_503
@signed_by_ingest_key
def holds(request: HttpRequest) -> JsonResponse:
    found = list(guard.open_holds(request.ingest_key.scope))
    # No hold, no second query: the common answer stays one query.
    restoring = writes.restoring([h.pair_id for h in found], timezone.now()) if found else set()
    return JsonResponse({"holds": [_hold(hold, restoring) for hold in found]})


@csrf_exempt
@require_GET
@database_errors_as_503
@signed_by_ingest_key
def pair_hold(request: HttpRequest, name: str) -> JsonResponse:
    pair = _pair_in_scope(request, name)
    if pair is None:
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


@csrf_exempt
@require_POST
@body_within_limit
@database_errors_as_503
@signed_by_ingest_key
def restored(request: HttpRequest, name: str) -> JsonResponse:
    """{"objects": [{"key", "etag"}]} -> {"pair", "restored": [{"key", "etag"}]}."""
    pair = _pair_in_scope(request, name)
    if pair is None:
        return error(404, f"no pair named {name!r} for this key")
    try:
        objects = _objects(request.body)
    except ValueError as problem:
        return error(400, str(problem))
    found = writes.recognise(pair.pk, objects, timezone.now())
    return JsonResponse(
        {"pair": pair.name, "restored": [{"key": k, "etag": e} for k, e in sorted(found)]}
    )


def _objects(body: bytes) -> list[tuple[str, str]]:
    """The (key, etag) pairs of a lookup's body; ValueError saying what is wrong."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("body: not JSON") from None
    objects = document.get("objects") if isinstance(document, dict) else None
    if not isinstance(objects, list):
        raise ValueError('body: an object with a list "objects" expected')
    if len(objects) > MAX_RESTORED_OBJECTS:
        raise ValueError(f"objects: at most {MAX_RESTORED_OBJECTS:,}, got {len(objects):,}")
    found = []
    for index, obj in enumerate(objects):
        key = obj.get("key") if isinstance(obj, dict) else None
        etag = obj.get("etag") if isinstance(obj, dict) else None
        if not (isinstance(key, str) and key and isinstance(etag, str) and etag):
            raise ValueError(f"objects[{index}]: a non-empty key and etag expected")
        if not (_storable(key) and _storable(etag)):
            raise ValueError(f"objects[{index}]: key and etag must be valid Unicode without NUL")
        if len(key.encode("utf-8")) > MAX_KEY_BYTES or len(etag) > MAX_ETAG_CHARS:
            raise ValueError(
                f"objects[{index}]: a key of at most {MAX_KEY_BYTES} bytes and an etag of "
                f"at most {MAX_ETAG_CHARS} characters expected"
            )
        found.append((key, etag))
    return found


def _storable(text: str) -> bool:
    # As ingest's schema: PostgreSQL text holds no NUL, and a lone surrogate cannot be encoded.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _pair_in_scope(request: HttpRequest, name: str) -> BucketPair | None:
    """The pair named, if the signing key may speak of it."""
    scope = request.ingest_key.scope
    pair = BucketPair.objects.filter(name=name).first()
    if pair is None or (scope is not None and pair.pk not in scope):
        return None
    return pair

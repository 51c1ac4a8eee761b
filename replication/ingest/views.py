"""POST /api/v1/events: the Lambda's reports come in here (contract: DESIGN.md, "Ingest API").

The view is thin: decorators answer 405, 413, 401 and 503; schema.py validates (400);
store.py writes. No client input reaches a code path that can answer 500.
"""

import functools
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from replication.ingest import schema, store, tallies
from replication.ingest.cache import ExpiringCache
from replication.ingest.signing import SignatureError, check_freshness, parse_timestamp, verify
from replication.models import IngestKey

logger = logging.getLogger(__name__)

# A key's last use is recorded to this resolution: one write a minute per key at most, not
# one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
RETRY_AFTER_SECONDS = 5
# Active keys are held this long by each process, saving a query per post: a revoked key
# is refused everywhere within this many seconds (at once by the process that revoked it).
KEY_CACHE_SECONDS = 5
_keys: ExpiringCache[IngestKey] = ExpiringCache(seconds=KEY_CACHE_SECONDS)


def error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def body_within_limit(view):
    """413 before the body is read: an unauthenticated client cannot make us buffer more."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        limit = settings.INGEST_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error(400, "Content-Length is not a number")
        if length > limit:
            return error(413, f"body: at most {limit} bytes, got {length}")
        return view(request, *args, **kwargs)

    return wrapper


def counted(view):
    """Adds every answer to the request (and rejection) totals /metrics reports.

    An accepted batch is counted inside its own INSERT (the view marks it ``counted``), so
    the common case costs no extra statement.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if not getattr(response, "counted", False):
            tallies.add_requests_quietly(tallies.RequestCounts.for_status(response.status_code))
        return response

    return wrapper


def database_errors_as_503(view):
    """A database failure is ours, not the client's: 503 and a hint to retry.

    Whatever the batch had written was rolled back with its transaction, so a retry is safe.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except DatabaseError:
            logger.exception("ingest: database error, answering 503")
            response = error(503, "database unavailable; retry later")
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response

    return wrapper


def without_connection_check(view):
    """Spares each post the ``SELECT 1`` round trip Django makes before a request's first
    query (CONN_HEALTH_CHECKS). A connection that died meanwhile fails this post's own
    statement instead: a 503 the sender retries, and Django replaces the connection when
    the request ends."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        connection.health_check_done = True
        return view(request, *args, **kwargs)

    return wrapper


def signed_by_ingest_key(view):
    """401 unless the body is signed by an active ingest key; sets ``request.ingest_key``."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        try:
            request.ingest_key = authenticate(request)
        except SignatureError as refusal:
            return error(401, str(refusal))
        note_use(request.ingest_key)
        return view(request, *args, **kwargs)

    return wrapper


def authenticate(request: HttpRequest) -> IngestKey:
    key_id = request.headers.get("X-Backup-Key")
    if not key_id:
        raise SignatureError("missing X-Backup-Key header")
    timestamp = parse_timestamp(request.headers.get("X-Backup-Timestamp"))
    check_freshness(timestamp, time.time(), settings.INGEST_CLOCK_SKEW_SECONDS)
    key = _keys.get(key_id, lambda: _load_key(key_id))
    if key is None:
        raise SignatureError("unknown or revoked key")
    # The canonical digits, not the raw header: parse_timestamp also accepts forms such as
    # " 17" that are not worth signing, and non-ASCII digits could not be signed at all.
    verify(key.secret, str(timestamp), request.headers.get("X-Backup-Signature"), request.body)
    return key


def _load_key(key_id: str) -> IngestKey | None:
    key = (
        IngestKey.objects.active()
        .filter(key_id=key_id)
        .only("pk", "secret", "last_used_at")
        .first()
    )
    if key is not None:
        key.scope = key.allowed_pair_ids()  # cached with the key: no query per post
    return key


@receiver([post_save, post_delete], sender=IngestKey)
@receiver(m2m_changed, sender=IngestKey.pairs.through)
def _forget_keys(**kwargs) -> None:
    _keys.clear()


def note_use(key: IngestKey) -> None:
    """Record the key's last use, at most once per LAST_USED_RESOLUTION.

    The conditional UPDATE is a claim: of several workers seeing a stale value at once, one
    writes and the others match no row.
    """
    now = timezone.now()
    stale_before = now - LAST_USED_RESOLUTION
    if key.last_used_at is not None and key.last_used_at >= stale_before:
        return
    IngestKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before)
    ).update(last_used_at=now)
    key.last_used_at = now  # the cached copy too, or it would claim again on every request


@csrf_exempt  # authenticated by signature, never by cookie
@require_POST
@counted
@body_within_limit
@database_errors_as_503
@without_connection_check
@signed_by_ingest_key
def post_events(request: HttpRequest) -> JsonResponse:
    try:
        events = schema.parse_batch(request.body, max_events=settings.INGEST_MAX_EVENTS)
    except schema.TooManyEvents as refusal:
        return error(413, str(refusal))
    except schema.InvalidBatch as refusal:
        return error(400, str(refusal), field=refusal.field)
    counts = tallies.RequestCounts.for_status(202)
    counts.guard_lookup_failures = schema.guard_lookup_failures(request.body)
    result = store.store_batch(
        events,
        received_at=timezone.now(),
        allowed_pair_ids=request.ingest_key.scope,
        counts=counts,
    )
    response = JsonResponse(result.to_dict(), status=202)
    response.counted = True
    return response

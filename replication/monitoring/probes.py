"""What /healthz checks: the database and, when one is configured, the broker. Never S3."""

import logging

from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

# A load balancer's probe must get an answer well within its own timeout.
TIMEOUT_SECONDS = 2


def database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        logger.warning("healthz: the database does not answer", exc_info=True)
        return False


def broker_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        logger.warning("healthz: the broker does not answer", exc_info=True)
        return False
    finally:
        client.close()


def check() -> dict[str, bool]:
    """Each part's name and whether it answered; the broker only when REDIS_URL is set."""
    parts = {"database": database_answers()}
    if settings.REDIS_URL:
        parts["broker"] = broker_answers(settings.REDIS_URL)
    return parts

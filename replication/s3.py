"""The one place the Django side creates boto3 S3 clients.

Timeouts and botocore's "standard" retry mode (which backs off on 503 SlowDown and
throttling) are set here, so no caller forgets them. AWS_ENDPOINT_URL, boto3's own variable,
points every client at an S3-compatible server. With EMBEDDED_S3 (the local default when
nothing says where S3 is) an in-process moto server stands in for AWS.
"""

import logging
import os
import socket
import threading
from datetime import UTC, datetime

import boto3
import botocore.session
import botocore.utils
from botocore.config import Config
from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_embedded_endpoint: str | None = None
_clients: dict[tuple, object] = {}


def client_config() -> Config:
    return Config(
        connect_timeout=settings.S3_CONNECT_TIMEOUT,
        read_timeout=settings.S3_READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": settings.S3_MAX_ATTEMPTS},
        max_pool_connections=32,
    )


def endpoint_url() -> str | None:
    if settings.EMBEDDED_S3:
        return _start_embedded_s3()
    return os.environ.get("AWS_ENDPOINT_URL") or None


def client(region: str | None = None):
    """A cached S3 client for ``region`` (clients are thread-safe; sessions are not)."""
    region = region or settings.AWS_REGION
    endpoint = endpoint_url()
    cache_key = (region, endpoint)
    with _lock:
        if cache_key not in _clients:
            # A botocore session of our own, handed to boto3, so that the parser factory is
            # reached through botocore's public API rather than boto3's private attributes.
            core = botocore.session.get_session()
            core.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=parse_timestamp
            )
            session = boto3.session.Session(botocore_session=core)
            _clients[cache_key] = session.client(
                "s3", region_name=region, endpoint_url=endpoint, config=client_config()
            )
        return _clients[cache_key]


def parse_timestamp(value: str) -> datetime:
    """S3's timestamps, ISO 8601 parsed by the standard library; anything else by botocore.

    botocore's default (dateutil) costs about 20 us a timestamp: most of the client CPU of a
    large listing, which has one per object. HTTP dates (HEAD's Last-Modified) fall back.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return botocore.utils.parse_timestamp(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def reset_clients() -> None:
    """Forget cached clients (tests that start a new moto mock call this)."""
    with _lock:
        _clients.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_embedded_s3() -> str:
    global _embedded_endpoint
    with _lock:
        if _embedded_endpoint is None:
            from moto.server import ThreadedMotoServer

            port = int(os.environ.get("EMBEDDED_S3_PORT") or _free_port())
            ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
            _embedded_endpoint = f"http://127.0.0.1:{port}"
            # moto accepts any credentials; boto3 still insists on having some.
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "embedded")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "embedded")
            log.warning("EMBEDDED_S3: using an in-process moto S3 at %s", _embedded_endpoint)
        return _embedded_endpoint

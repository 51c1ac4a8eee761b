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
import botocore.utils
from botocore.config import Config
from botocore.parsers import ResponseParserFactory
from django.conf import settings

from replication.reconcile.listxml import parse_list_page

log = logging.getLogger(__name__)

_lock = threading.Lock()
_embedded_endpoint: str | None = None
_clients: dict[tuple, object] = {}
_listing_clients: dict[tuple, object] = {}


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
            session = boto3.session.Session()
            # boto3 keeps its botocore session as _session; the parser factory is its component.
            parsers = session._session.get_component("response_parser_factory")
            parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
            _clients[cache_key] = session.client(
                "s3", region_name=region, endpoint_url=endpoint, config=client_config()
            )
        return _clients[cache_key]


def listing_client(region: str | None = None):
    """A cached S3 client whose ListObjectsV2 answers carry a lean ``ListPage``.

    Requests go through botocore unchanged (signing, retries, errors, ``encoding-type=url``);
    only the successful ListObjectsV2 body is read by replication/reconcile/listxml.py
    instead of botocore's parser: the response is ``{"ListPage": ..., "ResponseMetadata":
    ...}`` and has no ``Contents``. Every other operation parses as usual.
    """
    region = region or settings.AWS_REGION
    endpoint = endpoint_url()
    cache_key = (region, endpoint)
    with _lock:
        if cache_key not in _listing_clients:
            session = boto3.session.Session()
            factory = LeanListingParserFactory()
            factory.set_parser_defaults(timestamp_parser=parse_timestamp)
            session._session.register_component("response_parser_factory", factory)
            _listing_clients[cache_key] = session.client(
                "s3", region_name=region, endpoint_url=endpoint, config=client_config()
            )
        return _listing_clients[cache_key]


class LeanListingParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name):
        return _LeanListingParser(super().create_parser(protocol_name))


class _LeanListingParser:
    _LISTINGS = ("ListObjectsV2Output",)

    def __init__(self, parser):
        self._parser = parser

    def parse(self, response, shape):
        if shape is None or shape.name not in self._LISTINGS or response["status_code"] >= 300:
            return self._parser.parse(response, shape)
        return {
            "ListPage": parse_list_page(response["body"]),
            "ResponseMetadata": {
                "HTTPStatusCode": response["status_code"],
                "HTTPHeaders": response["headers"],
                "RequestId": response["headers"].get("x-amz-request-id", ""),
            },
        }

    def __getattr__(self, name):
        return getattr(self._parser, name)


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
        _listing_clients.clear()


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

"""The one place the Django side creates boto3 S3 clients.

Timeouts and botocore's "standard" retry mode (which backs off on 503 SlowDown and
throttling) are set here, so no caller forgets them. AWS_ENDPOINT_URL, boto3's own variable,
points every client at an S3-compatible server. With EMBEDDED_S3 (the local default when
nothing says where S3 is) an in-process moto server stands in for AWS.
"""

import logging
import os
import re
import socket
import threading
from datetime import UTC, datetime

import boto3
import botocore.handlers
import botocore.loaders
import botocore.utils
from botocore.config import Config
from botocore.parsers import ResponseParserFactory
from django.conf import settings

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
            session._session.register_component("data_loader", _loader())
            # boto3 keeps its botocore session as _session; the parser factory is its component.
            parsers = session._session.get_component("response_parser_factory")
            parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
            _clients[cache_key] = session.client(
                "s3", region_name=region, endpoint_url=endpoint, config=client_config()
            )
        return _clients[cache_key]


_shared_loader = None


def _loader():
    """One botocore loader for every session here (it caches the service models it reads)."""
    global _shared_loader
    if _shared_loader is None:
        _shared_loader = botocore.loaders.create_loader()
    return _shared_loader


def listing_client(region: str | None = None):
    """A cached S3 client whose ListObjectsV2 answers are the body, unparsed.

    Requests go through botocore unchanged (signing, retries, errors, ``encoding-type=url``);
    only a successful ListObjectsV2 body is left to replication/reconcile/listxml.py
    instead of botocore's parser: the response is ``{"ListBody": bytes, "ResponseMetadata":
    ...}`` and has no ``Contents``. Every other operation parses as usual.
    """
    region = region or settings.AWS_REGION
    endpoint = endpoint_url()
    cache_key = (region, endpoint)
    with _lock:
        if cache_key not in _listing_clients:
            session = boto3.session.Session()
            # The plain clients' loader: S3's service model is read and held once (12 MB).
            session._session.register_component("data_loader", _loader())
            factory = LeanListingParserFactory()
            factory.set_parser_defaults(timestamp_parser=parse_timestamp)
            session._session.register_component("response_parser_factory", factory)
            lister = session.client(
                "s3", region_name=region, endpoint_url=endpoint, config=client_config()
            )
            # botocore parses every S3 200 body as XML to spot an embedded <Error> (7 us a
            # key on a listing); a look at the root element says the same for a listing.
            lister.meta.events.unregister("before-parse.s3.*", botocore.handlers._handle_200_error)
            lister.meta.events.register_first("before-parse.s3.*", _handle_200_error)
            _listing_clients[cache_key] = lister
        return _listing_clients[cache_key]


_ERROR_ROOT = re.compile(rb"\s*(?:<\?xml[^>]*\?>\s*)?<Error[\s>]")


def _handle_200_error(operation_model, response_dict, **kwargs):
    if operation_model.name != "ListObjectsV2":
        return botocore.handlers._handle_200_error(operation_model, response_dict, **kwargs)
    status = response_dict["status_code"] if response_dict else None
    if status == 200 and _ERROR_ROOT.match(response_dict["body"]):
        response_dict["status_code"] = 500  # retried, as botocore's own handler would have


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
            "ListBody": response["body"],
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

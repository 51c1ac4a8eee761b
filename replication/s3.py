"""The one place the Django side creates boto3 S3 clients.

Timeouts and botocore's "standard" retry mode (which backs off on 503 SlowDown and
throttling) are set here, so no caller forgets them. AWS_ENDPOINT_URL, boto3's own variable,
points every client at an S3-compatible server. With EMBEDDED_S3 (the local default when
nothing says where S3 is) a moto server on 127.0.0.1:EMBEDDED_S3_PORT stands in for AWS: the
one ``make run`` / ``make demo`` start, shared by the web server, the commands and the worker;
a process that finds none there starts its own on that port, and says so.
"""

import logging
import os
import re
import socket
import threading
from contextlib import closing
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import boto3
import botocore.handlers
import botocore.loaders
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.parsers import ResponseParserFactory
from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_embedded_endpoint: str | None = None
_clients: dict[tuple, object] = {}
_listing_clients: dict[tuple, object] = {}

# The local S3 accepts any credentials, but boto3 refuses to sign without some: these fixed
# ones are what every process of a local setup uses (and what the README tells scripts).
LOCAL_ACCESS_KEY_ID = "local"
LOCAL_SECRET_ACCESS_KEY = "local-secret"  # noqa: S105  (moto's, not a secret)


def client_config() -> Config:
    return Config(
        connect_timeout=settings.S3_CONNECT_TIMEOUT,
        read_timeout=settings.S3_READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": settings.S3_MAX_ATTEMPTS},
        # One client serves every range's HEAD threads at once; a smaller pool opens (and
        # drops) a connection per HEAD beyond it.
        max_pool_connections=max(
            32, settings.RECONCILE_INLINE_RANGES * settings.RECONCILE_CHECKSUM_THREADS
        ),
    )


def endpoint_url() -> str | None:
    if settings.EMBEDDED_S3:
        return _local_s3()
    return os.environ.get("AWS_ENDPOINT_URL") or None


def local_endpoint() -> str:
    return f"http://127.0.0.1:{settings.EMBEDDED_S3_PORT}"


def describe() -> str:
    """Which S3 this process talks to, in words, for commands to print before they start."""
    if settings.EMBEDDED_S3:
        return f"the local S3 (moto) at {local_endpoint()}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        return f"the S3-compatible server at {endpoint} (AWS_ENDPOINT_URL)"
    profile = os.environ.get("AWS_PROFILE")
    credentials = f"profile {profile}" if profile else "the default AWS credentials"
    return f"AWS S3 ({credentials}, default region {settings.AWS_REGION})"


def client(region: str | None = None):
    """A cached S3 client for ``region`` (clients are thread-safe; sessions are not)."""
    region = region or settings.AWS_REGION
    endpoint = endpoint_url()
    cache_key = (region, endpoint)
    with _lock:
        if cache_key not in _clients:
            # A botocore session of our own, handed to boto3, so that its components are
            # reached through botocore's public API rather than boto3's private attributes.
            core = botocore.session.get_session()
            core.register_component("data_loader", _loader())
            core.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=parse_timestamp
            )
            session = boto3.session.Session(botocore_session=core, **_local_credentials(endpoint))
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
    """A cached S3 client for a reconcile's listings and checksum HEADs, parsed lean.

    Requests go through botocore unchanged (signing, retries, errors, ``encoding-type=url``);
    only successful answers skip botocore's parser. A ListObjectsV2 body is left to
    replication/reconcile/listxml.py: the response is ``{"ListBody": bytes,
    "ResponseMetadata": ...}`` and has no ``Contents``. A HeadObject answer has only the
    fields a checksum comparison reads (ETag, ContentLength, the checksum and its type),
    taken from its headers as botocore would name them. Every other operation parses as usual.
    """
    region = region or settings.AWS_REGION
    endpoint = endpoint_url()
    cache_key = (region, endpoint)
    with _lock:
        if cache_key not in _listing_clients:
            core = botocore.session.get_session()
            # The plain clients' loader: S3's service model is read and held once (12 MB).
            core.register_component("data_loader", _loader())
            factory = LeanParserFactory()
            factory.set_parser_defaults(timestamp_parser=parse_timestamp)
            core.register_component("response_parser_factory", factory)
            session = boto3.session.Session(botocore_session=core, **_local_credentials(endpoint))
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
    if operation_model.name not in ("ListObjectsV2", "ListObjectVersions"):
        return botocore.handlers._handle_200_error(operation_model, response_dict, **kwargs)
    status = response_dict["status_code"] if response_dict else None
    if status == 200 and _ERROR_ROOT.match(response_dict["body"]):
        response_dict["status_code"] = 500  # retried, as botocore's own handler would have


class LeanParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name):
        return _LeanParser(super().create_parser(protocol_name))


class _LeanParser:
    """botocore's parser, except for the two answers a reconcile makes thousands of."""

    def __init__(self, parser):
        self._parser = parser

    def parse(self, response, shape):
        if shape is None or response["status_code"] >= 300:
            return self._parser.parse(response, shape)
        if shape.name == "ListObjectsV2Output":
            return {"ListBody": response["body"], "ResponseMetadata": _metadata(response)}
        if shape.name == "ListObjectVersionsOutput":  # read by replication/restore/versionxml.py
            return {"VersionsBody": response["body"], "ResponseMetadata": _metadata(response)}
        if shape.name == "HeadObjectOutput":
            return _head_fields(response["headers"]) | {"ResponseMetadata": _metadata(response)}
        return self._parser.parse(response, shape)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def _metadata(response) -> dict:
    headers = response["headers"]
    return {
        "HTTPStatusCode": response["status_code"],
        "HTTPHeaders": headers,
        "RequestId": headers.get("x-amz-request-id", ""),
    }


# HeadObject's fields a checksum comparison reads (reconcile/checksums.py), by header; the
# encryption says whether the ETag is an MD5 of the content (not with SSE-KMS or SSE-C).
_HEAD_FIELDS = (
    ("ETag", "etag"),
    ("ServerSideEncryption", "x-amz-server-side-encryption"),
    ("SSECustomerAlgorithm", "x-amz-server-side-encryption-customer-algorithm"),
    ("ChecksumCRC64NVME", "x-amz-checksum-crc64nvme"),
    ("ChecksumCRC32", "x-amz-checksum-crc32"),
    ("ChecksumCRC32C", "x-amz-checksum-crc32c"),
    ("ChecksumSHA1", "x-amz-checksum-sha1"),
    ("ChecksumSHA256", "x-amz-checksum-sha256"),
    ("ChecksumType", "x-amz-checksum-type"),
)


def _head_fields(headers) -> dict:
    fields = {name: headers[header] for name, header in _HEAD_FIELDS if header in headers}
    length = headers.get("content-length")
    if length is not None:
        fields["ContentLength"] = int(length)
    return fields


def parse_timestamp(value: str) -> datetime:
    """S3's timestamps, ISO 8601 parsed by the standard library; anything else by botocore.

    botocore's default (dateutil) costs about 20 us a timestamp: most of the client CPU of a
    large listing, which has one per object. HTTP dates (HEAD's Last-Modified) in GMT by the
    standard library too; anything else falls back.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        if isinstance(value, str) and value.endswith(" GMT"):
            try:  # HEAD's Last-Modified, an HTTP date: 2 us here, 37 in botocore's
                return parsedate_to_datetime(value)
            except (TypeError, ValueError):
                pass
        return botocore.utils.parse_timestamp(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def reset_clients() -> None:
    """Forget cached clients (tests that start a new moto mock call this)."""
    with _lock:
        _clients.clear()
        _listing_clients.clear()


def _local_credentials(endpoint: str | None) -> dict:
    """Fixed credentials for a local S3 that was given without any (development only).

    ``AWS_ENDPOINT_URL=http://127.0.0.1:5055`` alone would otherwise fail with "Unable to
    locate credentials", although moto accepts anything.
    """
    if not endpoint or settings.PRODUCTION:
        return {}
    if boto3.session.Session().get_credentials() is not None:
        return {}
    return {
        "aws_access_key_id": LOCAL_ACCESS_KEY_ID,
        "aws_secret_access_key": LOCAL_SECRET_ACCESS_KEY,
    }


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def make_local_s3_server(port: int):
    """A moto S3 server bound to 127.0.0.1:``port``; raises OSError if the port is taken."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    return make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


def _local_s3() -> str:
    global _embedded_endpoint
    with _lock:
        if _embedded_endpoint is None:
            endpoint = local_endpoint()
            # moto accepts any credentials; boto3 still insists on having some.
            os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_ACCESS_KEY_ID)
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET_ACCESS_KEY)
            port = settings.EMBEDDED_S3_PORT
            if not is_listening(port):
                try:
                    server = make_local_s3_server(port)
                except OSError:
                    pass  # another process bound it a moment ago: use that one
                else:
                    threading.Thread(target=server.serve_forever, daemon=True).start()
                    log.warning(
                        "No local S3 was running at %s: started an empty one inside this "
                        "process, gone when it exits. `make run` or `make demo` start one that "
                        "every process shares.",
                        endpoint,
                    )
            _embedded_endpoint = endpoint
        return _embedded_endpoint

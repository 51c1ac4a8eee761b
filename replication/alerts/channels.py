"""Sending one message through one channel: the I/O edge of alerts (SMTP and HTTP).

Errors are raised as DeliveryError with a message safe to store and show: it never holds
the target URL (a Slack URL is a credential) or the webhook secret, and says nothing of the
server's network (no address, no "connection refused" against "timed out": either would let
a staff user map what the server can reach). The full reason goes to the server's log.
HTTP connections go only to addresses replication/alerts/targets.py allows, checked against
the address connected to; proxies from the environment are not used, since through one the
address connected to would be the proxy's.
"""

import http.client
import json
import logging
import smtplib
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import send_mail

from replication.alerts import messages, targets
from replication.ingest.signing import sign
from replication.models import AlertChannel

logger = logging.getLogger(__name__)

USER_AGENT = "backupsite-alerts/1"


class DeliveryError(Exception):
    """The channel could not take the message now; worth retrying."""


def send(channel: AlertChannel, message: messages.Message) -> None:
    """Deliver ``message`` through ``channel`` or raise DeliveryError."""
    timeout = settings.ALERT_HTTP_TIMEOUT
    if channel.kind == AlertChannel.Kind.EMAIL:
        _send_email(channel, message)
    elif channel.kind == AlertChannel.Kind.WEBHOOK:
        body = _json(messages.webhook_payload(message))
        timestamp = str(int(time.time()))
        headers = {
            "X-Backup-Timestamp": timestamp,
            "X-Backup-Signature": sign(channel.secret, timestamp, body),
        }
        post(channel.target, body, headers, timeout)
    elif channel.kind == AlertChannel.Kind.SLACK:
        post(channel.target, _json(messages.slack_payload(message)), {}, timeout)
    else:
        raise DeliveryError(f"unknown channel kind {channel.kind!r}")


def _send_email(channel: AlertChannel, message: messages.Message) -> None:
    try:
        send_mail(
            messages.subject(message),
            messages.text(message),
            None,  # DEFAULT_FROM_EMAIL
            channel.recipients,
            fail_silently=False,
        )
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"mail server: {type(exc).__name__}: {exc}") from None


def _json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body: report it instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = targets.connect


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    # TLS still verifies the certificate against the URL's host name: only the TCP
    # connection goes to the checked address.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = targets.connect


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)


_opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), _NoRedirects, _CheckedHTTPHandler, _CheckedHTTPSHandler
)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST JSON; any answer but 2xx, or none within ``timeout`` seconds, is a DeliveryError."""
    request = urllib.request.Request(  # noqa: S310 (targets are validated http(s) URLs)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, targets.TargetRefused):
            raise DeliveryError(targets.REFUSED) from None
        _unreachable(exc.reason, timeout)
    except (OSError, http.client.HTTPException) as exc:
        _unreachable(exc, timeout)
    except ValueError:
        # Its message would quote the URL, which may be a credential.
        raise DeliveryError("the target is not a usable URL") from None


def _unreachable(reason, timeout: float) -> None:
    # Refused, timed out, no such host, reset: one message for all, the detail in our log.
    logger.warning("alert webhook: no delivery: %s: %s", type(reason).__name__, reason)
    raise DeliveryError(
        f"could not connect to the target, or it gave no answer within {timeout:g} s"
    ) from None

"""Request signing for the ingest API (pure: no Django, no I/O).

signature = "sha256=" + hex(HMAC-SHA256(secret, "<timestamp>.<raw body>"))

The Lambda handler carries its own copy of ``sign`` because it must deploy alone;
tests/test_lambda_report.py proves the two agree.
"""

import hashlib
import hmac

SCHEME = "sha256="


class SignatureError(Exception):
    """The request is not authentic; the message says why without revealing secrets."""


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return SCHEME + digest


def parse_timestamp(raw: str | None) -> int:
    if not raw:
        raise SignatureError("missing X-Backup-Timestamp header")
    try:
        return int(raw.strip())
    except ValueError:
        raise SignatureError("X-Backup-Timestamp must be unix seconds") from None


def check_freshness(timestamp: int, now: float, max_skew_seconds: int) -> None:
    if abs(now - timestamp) > max_skew_seconds:
        raise SignatureError(f"timestamp is more than {max_skew_seconds} s from the server's clock")


def verify(secret: str, timestamp: str, signature: str | None, body: bytes) -> None:
    """Raise SignatureError unless ``signature`` signs ``timestamp`` and ``body``."""
    if not signature:
        raise SignatureError("missing X-Backup-Signature header")
    expected = sign(secret, timestamp, body)
    # Constant time: a byte-by-byte comparison would leak how much of a guess was right.
    if not hmac.compare_digest(
        expected.encode("ascii"), signature.strip().encode("ascii", "replace")
    ):
        raise SignatureError("signature does not match")

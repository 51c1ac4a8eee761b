"""S3 bucket naming and prefix rules, as pure functions.

The rules are AWS's for general purpose buckets:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
"""

import functools
import ipaddress
import re

_ALLOWED = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


# Ingest checks two names per event, and a deployment has few buckets: remember the verdicts.
@functools.lru_cache(maxsize=4096)
def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name, or None when it is."""
    if not 3 <= len(name) <= 63:
        return "must be 3 to 63 characters long"
    if not _ALLOWED.match(name):
        return (
            "may contain only lowercase letters, digits, dots and hyphens, "
            "and must begin and end with a letter or digit"
        )
    if ".." in name:
        return "must not contain two adjacent dots"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return "must not be formatted as an IP address"
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"must not start with the reserved prefix {prefix!r}"
    for suffix in _RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"must not end with the reserved suffix {suffix!r}"
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` is refused as a pair's prefix, or None when it is usable.

    Whitespace around a prefix is nearly always a paste accident; S3 would take it as part
    of the keys, so trimming it silently would point the pair at another key space.
    """
    if prefix != prefix.strip():
        return (
            f"{prefix!r} begins or ends with whitespace; S3 would take it as part of every "
            "key: remove it (or, if your keys really begin that way, ask for it to be allowed)"
        )
    return None


# The one place inside a pair's prefixes that restores and drills may write: this prefix at the
# root of a backup bucket. Reconcile never lists or counts it.
RESERVED_PREFIX = ".backupsite/"


def normalize_prefix(prefix: str) -> str:
    """A pair's prefix as S3 names keys (a leading ``/`` is part of them), ending in ``/``.

    Without the trailing slash, the prefix ``photos`` would also take in ``photos-old/``.
    Nothing else changes: ``/logs/`` and ``logs/`` are different key spaces in S3.
    """
    if not prefix or prefix.endswith("/"):
        return prefix
    return prefix + "/"


def prefixes_overlap(prefix_a: str, prefix_b: str) -> bool:
    """True when one prefix contains the other, so the two key spaces share keys."""
    return prefix_a.startswith(prefix_b) or prefix_b.startswith(prefix_a)


def split_location(location: str) -> tuple[str, str]:
    """Split ``bucket/some/prefix`` into the bucket and its prefix, a ``/`` added at its end.

    ``bucket//logs/`` names the prefix ``/logs/`` (keys beginning with a slash). Whitespace
    is kept, for the pair's validation to refuse with its reason.
    """
    if location.startswith("s3://"):
        location = location[len("s3://") :]
    bucket, _, prefix = location.partition("/")
    if prefix_problem(prefix):
        return bucket, prefix
    return bucket, normalize_prefix(prefix)

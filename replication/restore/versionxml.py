"""A lean parser of ListObjectVersions response bodies. Pure.

botocore's parser builds two dicts per version through its shape model; a restore's plan of a
large bucket reads millions of versions. Each ``<Version>`` and ``<DeleteMarker>`` is found by
one regular expression and its fields by another (any element order, whitespace between
elements), text unescaped and URL-decoded exactly as the reconcile's listing parser does
(replication/reconcile/listxml.py). Entries come back in key order (a stable sort: S3 writes
them so, moto writes a page's delete markers after its versions). tests/ compare it with
botocore's own parser.
"""

import re
from typing import NamedTuple

from replication.reconcile.listxml import ListXMLError, _text, parse_timestamp
from replication.restore.plan import Version

_ENTRY = re.compile(r"<(Version|DeleteMarker)>(.*?)</\1>", re.S)
_FIELD = re.compile(r"<(Key|VersionId|IsLatest|LastModified|ETag|Size)>([^<]*)</\1>")
_TRUNCATED = re.compile(r"<IsTruncated>\s*(\w+)\s*</IsTruncated>")
_NEXT_KEY = re.compile(r"<NextKeyMarker>([^<]*)</NextKeyMarker>")
_NEXT_VERSION = re.compile(r"<NextVersionIdMarker>([^<]*)</NextVersionIdMarker>")
_ENCODING = re.compile(r"<EncodingType>\s*([^<]*?)\s*</EncodingType>")


class VersionsPage(NamedTuple):
    versions: list[Version]  # keys less the ``strip`` characters of the listed prefix
    is_truncated: bool
    next_key_marker: str | None
    next_version_id_marker: str | None


def parse_versions_page(body: bytes | str, strip: int = 0) -> VersionsPage:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if "<ListVersionsResult" not in text:
        raise ListXMLError("not a ListVersionsResult")
    url = (m := _ENCODING.search(text)) is not None and m.group(1) == "url"
    versions = []
    for kind, block in _ENTRY.findall(text):
        fields = dict(_FIELD.findall(block))
        try:
            key = _text(fields["Key"], url)
            last_modified = parse_timestamp(fields["LastModified"])
        except KeyError as exc:
            raise ListXMLError(f"a <{kind}> without <{exc.args[0]}>") from None
        marker = kind == "DeleteMarker"
        versions.append(
            Version(
                key[strip:],
                _text(fields.get("VersionId", ""), False) or "null",
                last_modified,
                0 if marker else int(fields.get("Size", "0")),
                "" if marker else _text(fields.get("ETag", ""), False).strip('"'),
                marker,
                fields.get("IsLatest", "").strip() == "true",
            )
        )
    versions.sort(key=lambda v: v.key)
    truncated = (m := _TRUNCATED.search(text)) is not None and m.group(1) == "true"
    next_key = _NEXT_KEY.search(text)
    next_version = _NEXT_VERSION.search(text)
    return VersionsPage(
        versions,
        truncated,
        _text(next_key.group(1), url) if next_key else None,
        _text(next_version.group(1), False) if next_version else None,
    )

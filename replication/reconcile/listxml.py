"""A lean parser of ListObjectsV2 (and V1) response bodies. Pure.

botocore's XML parser builds a dict per object through its shape model and costs most of the
client CPU of a large listing (tens of microseconds per key). S3's pages are flat and
regular: one regular expression over the decoded body finds every ``<Contents>`` in S3's
element order, and a slower generic pass (any element order, whitespace between elements,
as other S3-compatible servers write them) takes over whenever the fast one does not account
for every ``<Contents>``. Text is unescaped exactly as an XML parser would (the five named
entities, character references, newline normalisation), then URL-decoded as botocore does
(``unquote_plus``) when the response says ``EncodingType`` is ``url``. tests/ compare it
with botocore's own parser on recorded and generated pages.
"""

import re
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import unquote_plus

from replication.reconcile.diff import Entry


class ListPage(NamedTuple):
    objects: list[Entry]  # keys less the ``strip`` characters of the side's prefix
    common_prefixes: list[str]
    is_truncated: bool
    next_token: str | None  # NextContinuationToken (V2) or NextMarker (V1)


class ListXMLError(ValueError):
    """The body is not a ListBucketResult this parser can read."""


_FAST = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>([^<]*)</LastModified>"
    r"<ETag>([^<]*)</ETag>(?:<Checksum[A-Za-z]*>[^<]*</Checksum[A-Za-z]*>)*"
    r"<Size>([^<]*)</Size>"
)
_BLOCK = re.compile(r"<Contents>(.*?)</Contents>", re.S)
_FIELD = re.compile(r"<(Key|LastModified|ETag|Size)>([^<]*)</\1>")
_PREFIXES = re.compile(r"<CommonPrefixes>\s*<Prefix>([^<]*)</Prefix>\s*</CommonPrefixes>")
_TRUNCATED = re.compile(r"<IsTruncated>\s*(\w+)\s*</IsTruncated>")
_NEXT_TOKEN = re.compile(r"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_NEXT_MARKER = re.compile(r"<NextMarker>([^<]*)</NextMarker>")
_ENCODING = re.compile(r"<EncodingType>\s*([^<]*?)\s*</EncodingType>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);")
_SPECIAL = re.compile(r"[&\r%+]")  # a key with one of these may need unescaping or decoding
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_entry = tuple.__new__  # tuple.__new__(Entry, values) is Entry(*values) with every field given


def _entity(match: re.Match) -> str:
    name = match.group(1)
    if name[0] != "#":
        return _NAMED[name]
    return chr(int(name[2:], 16) if name[1] in "xX" else int(name[1:]))


def unescape(text: str) -> str:
    """XML character data as a parser reports it."""
    if "\r" in text:  # XML normalises every line ending in character data to "\n"
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "&" in text:
        text = _ENTITY.sub(_entity, text)
    return text


def parse_list_page(body: bytes | str, strip: int = 0) -> ListPage:
    """One ListBucketResult body: its objects, common prefixes and where to continue.

    Objects come as diff entries: ``strip`` leading characters (the side's prefix) removed
    from each key, the ETag without its quotes, LastModified parsed.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if "<ListBucketResult" not in text:
        raise ListXMLError("not a ListBucketResult")
    url = (m := _ENCODING.search(text)) is not None and m.group(1) == "url"
    rows = _FAST.findall(text)
    if len(rows) != text.count("<Contents>"):
        rows = [_generic(block) for block in _BLOCK.findall(text)]
    cached, special = _timestamps.get, _SPECIAL.search
    objects = [
        # Nearly every key needs no unescaping and every ETag is "&quot;md5&quot;": no calls,
        # not even Entry's own __new__ (a Python function; the tuple's is C).
        _entry(Entry, (key[strip:], int(size), etag[6:-6], cached(lm) or parse_timestamp(lm), None))
        if not special(key)
        and etag.count("&") == 2
        and etag.startswith("&quot;")
        and etag.endswith("&quot;")
        else _object(key, lm, etag, size, url, strip)
        for key, lm, etag, size in rows
    ]
    prefixes = [_text(p, url) for p in _PREFIXES.findall(text)]
    truncated = (m := _TRUNCATED.search(text)) is not None and m.group(1) == "true"
    token = _NEXT_TOKEN.search(text) or _NEXT_MARKER.search(text)
    return ListPage(objects, prefixes, truncated, unescape(token.group(1)) if token else None)


def _generic(block: str) -> tuple[str, str, str, str]:
    fields = dict(_FIELD.findall(block))
    try:
        return fields["Key"], fields.get("LastModified", ""), fields.get("ETag", ""), fields["Size"]
    except KeyError as exc:
        raise ListXMLError(f"a <Contents> without <{exc.args[0]}>") from None


def _text(value: str, url: bool) -> str:
    if "&" in value or "\r" in value:
        value = unescape(value)
    if url and ("%" in value or "+" in value):
        value = unquote_plus(value)
    return value


def _object(key: str, last_modified: str, etag: str, size: str, url: bool, strip: int) -> Entry:
    if "&" in key or "\r" in key or (url and ("%" in key or "+" in key)):
        key = _text(key, url)
    if etag.startswith("&quot;") and etag.endswith("&quot;") and "&" not in etag[6:-6]:
        etag = etag[6:-6]  # S3 writes every ETag this way: the quick path
    else:
        etag = unescape(etag).strip('"')
    return Entry(key[strip:], int(size), etag, parse_timestamp(last_modified))


_timestamps: dict[str, datetime] = {}


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 LastModified as an aware datetime; a bucket repeats few distinct ones."""
    parsed = _timestamps.get(value)
    if parsed is None:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if len(_timestamps) > 10_000:  # bounded: memory must not grow with the bucket
            _timestamps.clear()
        _timestamps[value] = parsed
    return parsed

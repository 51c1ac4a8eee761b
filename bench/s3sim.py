"""s3sim: a synthetic S3 endpoint on 127.0.0.1 for benchmarks (never for the tests' S3, moto).

    .venv/bin/python bench/s3sim.py --port 9100 [--latency 0.040] [--seed 1]

Buckets are not stored: a bucket named ``<role>-<n>[-<layout>]`` (role ``src`` or ``bak``,
``n`` objects, layout ``dirs``, ``flat`` or ``onedir``) exists as soon as it is asked for,
and every key, size, ETag and checksum is a function of the object's index and the seed, so
ten million objects cost no memory. ``bak`` differs from ``src`` by a known diff
(``known_diff``): 1% missing, 0.5% extra, 0.25% changed with the same size, 0.25% changed
size. Layouts: ``dirs`` puts 1,000 objects in each of n/1,000 directories
(``data/00042/000042123.bin``); ``flat`` is sequential numbers with no prefix at all
(``0000042123``); ``onedir`` puts every key under one shared prefix
(``logs/2026/0000042123.gz``). A few keys have non-ASCII and XML/URL-special characters.

A bucket named ``ver-<n>[-<layout>]`` holds the same keys, each in three versions a day
apart (2026-01-01, -02, -03, newest first, version ids ``v3``, ``v2``, ``v1``), every tenth
key with a delete marker on top (2026-01-04): what a versioned backup's ListObjectVersions
shows, for the restore's planning.

Served, path-style: ListObjectVersions (``?versions``: prefix, key-marker, max-keys,
``encoding-type=url``; a page ends at a key's last entry), ListObjectsV2 and V1 (prefix,
delimiter, start-after / marker, continuation token, max-keys, ``encoding-type=url``),
HeadObject (``x-amz-checksum-sha256`` when checksum mode is enabled), GetObject, HeadBucket
and GetBucketLocation. Signatures are not checked. The ETag is a function of the object's
content version, not the MD5 of the body GET returns: enough for listings and HEADs, which
is what a reconcile reads.

Every request waits ``--latency`` seconds (default 0.040 s: the model of one S3 LIST round
trip, tens of milliseconds, which S3 serves for many clients at once) before it is answered,
on a thread of its own, so concurrent requests overlap as they do on S3. GET
``/__s3sim__/stats`` answers ``{"cpu_s": ..., "requests": ...}``: the server's own CPU, so a
benchmark can tell server cost from client cost.

GET ``/__s3sim__/prepare?bucket=NAME`` renders the bucket's listing entries once and keeps
them (some 350 MB per million objects), so that its listings without a delimiter are
slices of them, answered byte for byte as before for a fraction of the CPU: on a machine
the client shares with s3sim, that keeps S3's own work off the client's cores, as on S3. A
benchmark prepares its buckets before it measures anything, so every method meets the
same server.
"""

import argparse
import base64
import bisect
import hashlib
import json
import re
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote_plus, unquote, urlsplit
from xml.sax.saxutils import escape

LATENCY = 0.040  # seconds per request: the model of S3's LIST latency
LAST_MODIFIED = "2026-01-01T00:00:00.000Z"
LAST_MODIFIED_HTTP = formatdate(1767225600, usegmt=True)  # the same instant
MAX_KEYS = 1000
_TOP = "\U0010ffff"  # sorts after every character of any key
_BUCKET = re.compile(r"^(src|bak|ver)-(\d+)(?:-(dirs|flat|onedir))?$")
_PLAIN = re.compile(r"^[A-Za-z0-9/._~-]*$")  # needs neither XML nor URL escaping
_MIX = 0x9E3779B97F4A7C15
_MASK = 2**128 - 1  # a constant: 2**128 is past what the compiler folds


def key_name(layout: str, i: int) -> str:
    """The i-th key of a layout; keys sort in index order (fixed-width numbers)."""
    if i % 997 == 0:
        suffix = "-\u00e9t\u00e9"
    elif i % 499 == 13:
        suffix = " a+b&c<d>%e'f\""
    else:
        suffix = ""
    if layout == "flat":
        return f"{i:010d}{suffix}"
    if layout == "onedir":
        return f"logs/2026/{i:010d}{suffix}.gz"
    return f"data/{i // 1000:05d}/{i:09d}{suffix}.bin"


# A bucket is the sequence of (index, variant): variant 0 is the object key_name(i), variant
# 1 an extra object key_name(i) + ".extra" (backup only), which sorts right after it.
EXTRA_SUFFIX = ".extra"


def is_missing(i: int) -> bool:
    return i % 100 == 1


def is_extra(i: int) -> bool:
    return i % 200 == 7


def content_version(role: str, i: int, variant: int) -> int:
    if variant == 1:
        return 3
    if role == "bak" and i % 400 in (2, 3):
        return i % 400 - 1  # 1: same size, other content; 2: one byte longer
    return 0


def known_diff(n: int, layout: str = "dirs") -> dict[str, set[str]]:
    """What a correct reconcile of src-n-layout against bak-n-layout finds, by kind."""
    return {
        "missing": {key_name(layout, i) for i in range(1, n, 100)},
        "extra": {key_name(layout, i) + EXTRA_SUFFIX for i in range(7, n, 200)},
        "mismatched": {key_name(layout, i) for i in range(n) if i % 400 in (2, 3)},
    }


class Bucket:
    def __init__(self, name: str, seed: int):
        match = _BUCKET.match(name)
        if match is None:
            raise KeyError(name)
        self.name = name
        self.role, self.n, self.layout = match.group(1), int(match.group(2)), match.group(3)
        self.layout = self.layout or "dirs"
        self.seed = seed
        self._names = _Names(self.layout, self.n)
        self.prepared: Prepared | None = None

    def prepare(self) -> None:
        if self.prepared is None:
            self.prepared = Prepared(self)

    def variants(self, i: int) -> tuple[int, ...]:
        if self.role in ("src", "ver"):
            return (0,)
        if is_missing(i):
            return (1,) if is_extra(i) else ()
        return (0, 1) if is_extra(i) else (0,)

    def key(self, i: int, variant: int) -> str:
        name = key_name(self.layout, i)
        return name + EXTRA_SUFFIX if variant else name

    def size(self, i: int, variant: int) -> int:
        version = content_version(self.role, i, variant)
        return 1000 + (i * 7919) % 9000 + (version == 2)

    def etag(self, i: int, variant: int) -> str:
        version = content_version(self.role, i, variant)
        return "%032x" % ((i * _MIX + version * 0x51ED27 + self.seed) & _MASK)

    def listed(self, i: int, variant: int) -> tuple[str, int]:
        """(etag, size) at once: a listing's per-object cost is s3sim's main CPU."""
        version = content_version(self.role, i, variant)
        etag = "%032x" % ((i * _MIX + version * 0x51ED27 + self.seed) & _MASK)
        return etag, 1000 + (i * 7919) % 9000 + (version == 2)

    def checksum(self, i: int, variant: int) -> str:
        return base64.b64encode(hashlib.sha256(self.body(i, variant)).digest()).decode()

    def body(self, i: int, variant: int) -> bytes:
        version = content_version(self.role, i, variant)
        size = self.size(i, variant)
        chunk = f"{self.seed}:{i}:{version};".encode()
        return (chunk * (size // len(chunk) + 1))[:size]

    def first_after(self, bound: str, inclusive: bool = False) -> tuple[int, int]:
        """Position (index, variant) of the first object whose key is > bound (>= if inclusive)."""
        i = self._names.bisect(bound)
        # The extra object of the index before may still be after the bound.
        start = max(i - 1, 0)
        for j in range(start, min(start + 3, self.n)):
            for v in self.variants(j):
                k = self.key(j, v)
                if k > bound or (inclusive and k == bound):
                    return j, v
        return min(start + 3, self.n), 0

    def find(self, key: str) -> tuple[int, int] | None:
        i, v = self.first_after(key, inclusive=True)
        if i < self.n and v in self.variants(i) and self.key(i, v) == key:
            return i, v
        return None

    def walk(self, i: int, v: int):
        """Objects from position (i, v) on, as (i, variant, key)."""
        while i < self.n:
            for variant in self.variants(i):
                if variant >= v:
                    yield i, variant, self.key(i, variant)
            i, v = i + 1, 0


class _Names:
    """key_name over range(n) as a sorted sequence, for bisect without building it."""

    def __init__(self, layout: str, n: int):
        self.layout, self.n = layout, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> str:
        return key_name(self.layout, i)

    def bisect(self, bound: str) -> int:
        """Smallest i with key_name(i) > bound."""
        return bisect.bisect_right(self, bound)


class Prepared:
    """A bucket's keys and rendered <Contents> in order: a listing becomes a slice."""

    def __init__(self, bucket: Bucket):
        self.keys: list[str] = []
        self.xml: list[str] = []
        self.url: dict[int, str] = {}  # position -> entry, where URL encoding differs
        for i, v, key in bucket.walk(0, 0):
            entry = _contents(bucket, i, v, key, url=False)
            if not _PLAIN.match(key):
                self.url[len(self.keys)] = _contents(bucket, i, v, key, url=True)
            self.keys.append(key)
            self.xml.append(entry)
        self.special = sorted(self.url)

    def page(self, prefix: str, after: str, max_keys: int, url: bool):
        """(entries, last key, truncated) of a listing without a delimiter."""
        keys = self.keys
        start = max(bisect.bisect_right(keys, after), bisect.bisect_left(keys, prefix))
        end = bisect.bisect_left(keys, prefix + _TOP) if prefix else len(keys)
        stop = min(start + max_keys, end)
        entries = self.xml[start:stop]
        if url:
            first = bisect.bisect_left(self.special, start)
            for at in self.special[first : bisect.bisect_left(self.special, stop)]:
                entries[at - start] = self.url[at]
        last = keys[stop - 1] if stop > start else ""
        return entries, last, stop < end and max_keys > 0


# --- Listing ---------------------------------------------------------------------------------


def list_objects(bucket: Bucket, query: dict[str, str]) -> bytes:
    """A ListBucketResult (V2 when list-type=2, else V1) for a query string's parameters."""
    v2 = query.get("list-type") == "2"
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    url = query.get("encoding-type") == "url"
    max_keys = min(int(query.get("max-keys", MAX_KEYS)), MAX_KEYS)
    token = query.get("continuation-token") if v2 else None
    after = _decode_token(token) if token else query.get("start-after" if v2 else "marker", "")
    if delimiter and after.startswith(prefix) and _rolled_up(after, prefix, delimiter) and after:
        after += _TOP  # continuing after a common prefix: skip its whole group
    if bucket.prepared is not None and not delimiter:
        objects, last, truncated = bucket.prepared.page(prefix, after, max_keys, url)
        return _render(query, objects, [], truncated, last, v2, url)
    if prefix > after:
        walk = bucket.walk(*bucket.first_after(prefix, inclusive=True))
    else:
        walk = bucket.walk(*bucket.first_after(after))

    objects: list[str] = []
    prefixes: list[str] = []
    last = ""
    truncated = False
    while True:
        item = next(walk, None)
        if item is None:
            break
        i, v, key = item
        if not key.startswith(prefix):
            break
        if len(objects) + len(prefixes) == max_keys:
            truncated = max_keys > 0
            break
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                last = key[: cut + len(delimiter)]
                prefixes.append(last)
                walk = bucket.walk(*bucket.first_after(last + _TOP))
                continue
        objects.append(_contents(bucket, i, v, key, url))
        last = key
    return _render(query, objects, prefixes, truncated, last, v2, url)


VERSION_DAYS = ("2026-01-03", "2026-01-02", "2026-01-01")  # v3, v2, v1: newest first
_VERSION = (
    "<Version><Key>%s</Key><VersionId>v%d</VersionId><IsLatest>%s</IsLatest>"
    "<LastModified>%sT00:00:00.000Z</LastModified><ETag>&quot;%s&quot;</ETag>"
    "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Version>"
)
_MARKER = (
    "<DeleteMarker><Key>%s</Key><VersionId>d1</VersionId><IsLatest>true</IsLatest>"
    "<LastModified>2026-01-04T00:00:00.000Z</LastModified></DeleteMarker>"
)


def list_versions(bucket: Bucket, query: dict[str, str]) -> bytes:
    """A ListVersionsResult: three versions per key, a delete marker on every tenth."""
    prefix = query.get("prefix", "")
    url = query.get("encoding-type") == "url"
    max_keys = min(int(query.get("max-keys", MAX_KEYS)), MAX_KEYS)
    after = query.get("key-marker", "")
    if prefix > after:
        walk = bucket.walk(*bucket.first_after(prefix, inclusive=True))
    else:
        walk = bucket.walk(*bucket.first_after(after))
    entries: list[str] = []
    last, last_version, truncated = "", "", False
    for i, _, key in walk:
        if not key.startswith(prefix):
            break
        marker = i % 10 == 0
        if len(entries) + 3 + marker > max_keys:
            truncated = True
            break
        name = _text(key, url)
        etag, size = bucket.listed(i, 0)
        if marker:
            entries.append(_MARKER % name)
        for n, day in zip((3, 2, 1), VERSION_DAYS, strict=True):
            latest = "true" if n == 3 and not marker else "false"
            entries.append(_VERSION % (name, n, latest, day, etag[:-1] + str(n), size + n))
        last, last_version = key, "v1"
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        f"<Name>{query['_bucket']}</Name><Prefix>{_text(prefix, url)}</Prefix>",
        f"<KeyMarker>{_text(after, url)}</KeyMarker><MaxKeys>{max_keys}</MaxKeys>",
    ]
    if url:
        head.append("<EncodingType>url</EncodingType>")
    head.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if truncated:
        head.append(f"<NextKeyMarker>{_text(last, url)}</NextKeyMarker>")
        head.append(f"<NextVersionIdMarker>{last_version}</NextVersionIdMarker>")
    return "".join([*head, *entries, "</ListVersionsResult>"]).encode()


def _rolled_up(key: str, prefix: str, delimiter: str) -> bool:
    """Whether ``key`` is itself a common prefix (it ends at its first delimiter)."""
    return key.find(delimiter, len(prefix)) + len(delimiter) == len(key)


_CONTENTS = (
    "<Contents><Key>%s</Key><LastModified>" + LAST_MODIFIED + "</LastModified>"
    "<ETag>&quot;%s&quot;</ETag><Size>%d</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents>"
)


def _contents(bucket: Bucket, i: int, v: int, key: str, url: bool) -> str:
    if not _PLAIN.match(key):
        key = quote_plus(key, safe="/") if url else escape(key, {'"': "&quot;"})
    return _CONTENTS % (key, *bucket.listed(i, v))


def _text(value: str, url: bool) -> str:
    if _PLAIN.match(value):
        return value
    return quote_plus(value, safe="/") if url else escape(value, {'"': "&quot;"})


def _render(query, objects, prefixes, truncated, last, v2, url) -> bytes:
    name = query["_bucket"]
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        f"<Name>{name}</Name><Prefix>{_text(query.get('prefix', ''), url)}</Prefix>",
    ]
    if v2:
        head.append(f"<KeyCount>{len(objects) + len(prefixes)}</KeyCount>")
        if query.get("continuation-token"):
            head.append(f"<ContinuationToken>{query['continuation-token']}</ContinuationToken>")
        if truncated:
            head.append(f"<NextContinuationToken>{_encode_token(last)}</NextContinuationToken>")
        if query.get("start-after"):
            head.append(f"<StartAfter>{_text(query['start-after'], url)}</StartAfter>")
    else:
        head.append(f"<Marker>{_text(query.get('marker', ''), url)}</Marker>")
        if truncated and query.get("delimiter"):
            head.append(f"<NextMarker>{_text(last, url)}</NextMarker>")
    head.append(f"<MaxKeys>{min(int(query.get('max-keys', MAX_KEYS)), MAX_KEYS)}</MaxKeys>")
    if query.get("delimiter"):
        head.append(f"<Delimiter>{_text(query['delimiter'], url)}</Delimiter>")
    if url:
        head.append("<EncodingType>url</EncodingType>")
    head.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    tail = [f"<CommonPrefixes><Prefix>{_text(p, url)}</Prefix></CommonPrefixes>" for p in prefixes]
    return "".join([*head, *objects, *tail, "</ListBucketResult>"]).encode()


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode_token(token: str) -> str:
    return base64.urlsafe_b64decode(token.encode()).decode()


# --- HTTP ------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server sends the headers and the body in two writes: with Nagle's algorithm on,
    # a small body waits for the client's delayed ACK, some 40 ms that S3 does not add.
    disable_nagle_algorithm = True
    server: "S3Sim"

    def log_message(self, *args) -> None:  # one line per request would drown the bench
        pass

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_PUT(self) -> None:
        self._send(501, _error("NotImplemented", "s3sim buckets are read-only"))

    do_POST = do_DELETE = do_PUT

    def _handle(self, head: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlsplit(self.path)
        if url.path == "/__s3sim__/stats":
            self._send(200, json.dumps(self.server.stats()).encode(), "application/json")
            return
        if url.path == "/__s3sim__/prepare":
            name = parse_qs(url.query).get("bucket", [""])[0]
            try:
                self.server.bucket(name).prepare()
            except KeyError:
                self._send(404, _error("NoSuchBucket", "The specified bucket does not exist"))
                return
            self._send(200, b"{}", "application/json")
            return
        self.server.count()
        time.sleep(self.server.latency)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        name, _, key = unquote(url.path).lstrip("/").partition("/")
        try:
            bucket = self.server.bucket(name)
        except KeyError:
            self._send(404, _error("NoSuchBucket", "The specified bucket does not exist"))
            return
        if not key:
            if head:
                self._send(200, b"")
            elif "versions" in query:
                query["_bucket"] = name
                self._send(200, list_versions(bucket, query))
            elif "location" in query:
                self._send(
                    200, b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
                )
            else:
                query["_bucket"] = name
                self._send(200, list_objects(bucket, query))
            return
        found = bucket.find(key)
        if found is None:
            self._send(404, b"" if head else _error("NoSuchKey", "The key does not exist"))
            return
        i, v = found
        headers = {
            "ETag": f'"{bucket.etag(i, v)}"',
            "Last-Modified": LAST_MODIFIED_HTTP,
            "Accept-Ranges": "bytes",
        }
        if self.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers["x-amz-checksum-sha256"] = bucket.checksum(i, v)
        if head:
            headers["Content-Length"] = str(bucket.size(i, v))
            self._send(200, None, "binary/octet-stream", headers)
        else:
            self._send(200, bucket.body(i, v), "binary/octet-stream", headers)

    def _send(self, status, body, content_type="application/xml", headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


def _error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


class S3Sim(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int = 0, latency: float = LATENCY, seed: int = 1):
        super().__init__(("127.0.0.1", port), Handler)
        self.latency = latency
        self.seed = seed
        self._buckets: dict[str, Bucket] = {}
        self._requests = 0
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bucket(self, name: str) -> Bucket:
        if name not in self._buckets:
            self._buckets[name] = Bucket(name, self.seed)
        return self._buckets[name]

    def count(self) -> None:
        with self._lock:
            self._requests += 1

    def stats(self) -> dict:
        return {"cpu_s": time.process_time(), "requests": self._requests}

    def start(self) -> "S3Sim":
        """Serve on a background thread (tests); the command line serves in the foreground."""
        threading.Thread(target=self.serve_forever, name="s3sim", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=LATENCY, help="seconds per request")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    server = S3Sim(args.port, args.latency, args.seed)
    print(f"s3sim at {server.endpoint} (latency {args.latency * 1000:.0f} ms)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

"""Listing both sides of a pair with boto3 paginators, at the same time. I/O edge.

Each side is paginated by its own thread into a small bounded queue of pages, so the two
listings overlap (against S3 each page is a network round trip) while the merge consumes
them; memory is a few pages per side whatever the bucket size.
"""

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from replication.buckets import RESERVED_PREFIX
from replication.reconcile.diff import Entry
from replication.reconcile.listxml import ListXMLError, parse_list_page
from replication.reconcile.ranges import KeyRange

PAGE_SIZE = 1000  # S3's maximum
_QUEUED_PAGES = 2  # per side and range: memory is pages x ranges at once
_DONE = object()


class ListingError(Exception):
    """S3 refused or failed a listing; the message is one line an operator can act on."""


@dataclass(frozen=True)
class Side:
    name: str  # "source" or "backup", for messages
    bucket: str
    prefix: str


EVERYTHING = KeyRange()


def list_pages(s3, side: Side, key_range: KeyRange = EVERYTHING) -> Iterator[list[Entry]]:
    """Pages of one side's entries in ``key_range``, keys relative to the side's prefix.

    With a client from ``replication.s3.listing_client`` each page is read by the lean
    parser (listxml.py); any other boto3 client's botocore-parsed pages work the same.
    """
    params = {"Bucket": side.bucket, "Prefix": side.prefix, "MaxKeys": PAGE_SIZE}
    if key_range.start_after is not None:
        params["StartAfter"] = side.prefix + key_range.start_after
    end = key_range.end
    # Restores and drills write under the reserved prefix at a backup bucket's root: never
    # part of the pair, never counted.
    reserved = side.name == "backup" and not side.prefix
    try:
        while True:
            response = s3.list_objects_v2(**params)
            entries, token = _entries(response, len(side.prefix))
            if reserved:
                entries = _without_reserved(entries)
            if end is not None and entries and entries[-1].key > end:
                # The range ends inside this page: stop listing, S3 has nothing more for us.
                yield [e for e in entries if e.key <= end]
                return
            yield entries
            if token is None:
                return
            params["ContinuationToken"] = token
    except (ClientError, BotoCoreError) as exc:
        raise ListingError(describe_error(exc, side)) from exc
    except ListXMLError as exc:
        where = f"{side.name} bucket {side.bucket!r}"
        raise ListingError(f"unreadable listing of {where}: {exc}") from exc


def _entries(response: dict, strip: int) -> tuple[list[Entry], str | None]:
    """A response's entries (keys less ``strip`` characters) and the token of the next page."""
    lean = response.get("ListBody")
    if lean is not None:
        page = parse_list_page(lean, strip)
        return page.objects, page.next_token if page.is_truncated else None
    entries = [
        Entry(obj["Key"][strip:], obj["Size"], obj["ETag"].strip('"'), obj["LastModified"])
        for obj in response.get("Contents", ())
    ]
    token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
    return entries, token


_PAST_RESERVED = RESERVED_PREFIX[:-1] + chr(ord("/") + 1)  # the first key after them all


def _without_reserved(entries: list[Entry]) -> list[Entry]:
    # A page is sorted: only one that spans the reserved keys is looked at key by key.
    if not entries or entries[0].key >= _PAST_RESERVED or entries[-1].key < RESERVED_PREFIX:
        return entries
    return [e for e in entries if not e.key.startswith(RESERVED_PREFIX)]


def probe_keys(
    s3, side: Side, asks: list[tuple[str | None, int]], threads: int = 64
) -> list[list[str]]:
    """Keys (prefix removed) of short listings ``(start_after, max_keys)``, at once (as
    many at a time as the client's connection pool holds by default)."""

    def one(ask: tuple[str | None, int]) -> list[str]:
        start_after, max_keys = ask
        params = {"Bucket": side.bucket, "Prefix": side.prefix, "MaxKeys": max_keys}
        if start_after:
            params["StartAfter"] = side.prefix + start_after
        try:
            entries, _ = _entries(s3.list_objects_v2(**params), len(side.prefix))
        except (ClientError, BotoCoreError) as exc:
            raise ListingError(describe_error(exc, side)) from exc
        return [e.key for e in entries]

    if len(asks) == 1:
        return [one(asks[0])]
    with ThreadPoolExecutor(max_workers=min(threads, len(asks))) as pool:
        return list(pool.map(one, asks))


def describe_error(exc: Exception, side: Side) -> str:
    """One line saying what went wrong with ``side``'s bucket, without a traceback."""
    where = f"{side.name} bucket {side.bucket!r}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404") or status == 404:
            return f"{where} does not exist"
        if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            return f"access denied to {where}: the credentials need s3:ListBucket on it"
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301") or status == 301:
            actual = exc.response.get("Error", {}).get("Region") or exc.response.get(
                "ResponseMetadata", {}
            ).get("HTTPHeaders", {}).get("x-amz-bucket-region")
            hint = f" (it is in {actual})" if actual else ""
            return f"{where} is in another region than the pair's{hint}"
        message = error.get("Message") or str(exc)
        return f"S3 error listing {where}: {code} {message}".strip()
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return f"cannot reach the S3 endpoint for {where}: {exc}"
    if isinstance(exc, ReadTimeoutError):
        return f"S3 timed out listing {where}: {exc}"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (set AWS_ACCESS_KEY_ID or a role)"
    return f"error listing {where}: {exc}"


class ParallelListing:
    """Both sides listed concurrently; ``source`` and ``backup`` iterate their entries, or
    ``source_pages`` and ``backup_pages`` their pages (lists of entries): one way per side.

    Use as a context manager: leaving it (normally or by an exception in the consumer)
    stops both listing threads. A listing error is raised from the iterator that hit it.
    """

    def __init__(
        self, s3_source, source: Side, s3_backup, backup: Side, key_range: KeyRange = EVERYTHING
    ):
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.source_pages = self._start(s3_source, source, key_range)
        self.backup_pages = self._start(s3_backup, backup, key_range)
        self.source = _flat(self.source_pages)
        self.backup = _flat(self.backup_pages)

    def _start(self, s3, side: Side, key_range: KeyRange) -> Iterator[list[Entry]]:
        pages: queue.Queue = queue.Queue(maxsize=_QUEUED_PAGES)

        def produce() -> None:
            try:
                for page in list_pages(s3, side, key_range):
                    if not self._put(pages, page):
                        return
                self._put(pages, _DONE)
            except Exception as exc:  # handed to the consumer, which raises it
                self._put(pages, exc)

        thread = threading.Thread(target=produce, name=f"list-{side.name}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self._consume(pages)

    def _put(self, pages: queue.Queue, item) -> bool:
        # A timeout loop instead of a blocking put, so a consumer that left never strands us.
        while not self._stop.is_set():
            try:
                pages.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    @staticmethod
    def _consume(pages: queue.Queue) -> Iterator[list[Entry]]:
        while True:
            item = pages.get()
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def __enter__(self) -> "ParallelListing":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


def _flat(pages: Iterator[list[Entry]]) -> Iterator[Entry]:
    for page in pages:
        yield from page

"""Validation of an ingest request body (pure: no Django, no I/O).

``parse_batch(body, max_events)`` turns the raw bytes of ``POST /api/v1/events`` into a list
of ``Event`` or raises ``InvalidBatch`` naming the first bad field (``events[3].size``), so
the sender can fix its request. Every check the database would make is made here first: a
value the database refuses must come back to the client as a 400, never as a server error.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from replication.buckets import bucket_name_problem
from replication.ingest.ordering import Precedence, sequencer_order

STATUSES = ("copied", "deleted", "skipped", "failed", "held")

MAX_KEY_BYTES = 1024  # S3's own limit on a key, in UTF-8 bytes
MAX_SIZE = 2**63 - 1  # the largest value a bigint column holds
MAX_ATTEMPT = 1000
MAX_ERROR_MESSAGE_CHARS = 2000
# Text columns' lengths; the models use the same numbers.
MAX_EVENT_NAME_CHARS = 100
MAX_VERSION_ID_CHARS = 1024
MAX_ETAG_CHARS = 128
MAX_ERROR_CODE_CHARS = 100
MAX_REQUEST_ID_CHARS = 128
# S3 did not exist before 2006 and datetimes past 9999 cannot be represented; anything outside
# is a broken clock or a broken sender.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class InvalidBatch(ValueError):
    """The body cannot be stored; ``field`` names the first bad part."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class TooManyEvents(ValueError):
    """More events than one request may carry (answered 413: split the batch)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One copy result, validated. Optional text fields are "" when absent."""

    source_bucket: str
    destination_bucket: str
    key: str
    version_id: str
    event_name: str
    event_time: datetime
    sequencer: str
    size: int | None
    etag: str
    status: str
    error_code: str
    error_message: str
    started_at: datetime | None
    finished_at: datetime
    request_id: str
    attempt: int

    @property
    def sequencer_order(self) -> str:
        return sequencer_order(self.sequencer)

    @property
    def precedence(self) -> Precedence:
        return Precedence(self.sequencer_order, self.finished_at, self.attempt)

    @property
    def lag(self) -> timedelta:
        return self.finished_at - self.event_time


def parse_batch(body: bytes, max_events: int) -> list[Event]:
    """Parse and validate a whole request body; nothing partial comes out of it."""
    document = _load_json(body)
    if not isinstance(document, dict):
        raise InvalidBatch("body", "must be a JSON object with an 'events' list")
    events = document.get("events")
    if not isinstance(events, list):
        raise InvalidBatch("events", "must be a list")
    if len(events) > max_events:
        raise TooManyEvents(f"events: at most {max_events} per request, got {len(events)}")
    return [_parse_event(item, f"events[{index}]") for index, item in enumerate(events)]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBatch("body", "must be UTF-8") from None
    try:
        # NaN and Infinity are Python extensions, not JSON.
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidBatch("body", "is nested too deeply") from None
    except ValueError as error:
        # JSONDecodeError, NaN/Infinity, and integers longer than Python converts (4,300 digits).
        raise InvalidBatch("body", f"is not valid JSON ({error})") from None


def _parse_event(item: Any, where: str) -> Event:
    if not isinstance(item, dict):
        raise InvalidBatch(where, "must be an object")
    read = _Reader(item, where)
    source_bucket = read.bucket("source_bucket")
    destination_bucket = read.bucket("destination_bucket")
    key = read.text("key", max_chars=MAX_KEY_BYTES)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidBatch(f"{where}.key", f"must be at most {MAX_KEY_BYTES} bytes in UTF-8")
    sequencer = read.text("sequencer", max_chars=None)
    try:
        sequencer_order(sequencer)
    except ValueError as error:
        raise InvalidBatch(f"{where}.sequencer", str(error)) from None
    status = read.text("status", max_chars=20)
    if status not in STATUSES:
        raise InvalidBatch(f"{where}.status", f"must be one of {', '.join(STATUSES)}")
    event_time = read.moment("event_time")
    started_at = read.moment("started_at", required=False)
    finished_at = read.moment("finished_at")
    if started_at is not None and finished_at < started_at:
        raise InvalidBatch(f"{where}.finished_at", "must not be before started_at")
    return Event(
        source_bucket=source_bucket,
        destination_bucket=destination_bucket,
        key=key,
        version_id=read.text("version_id", max_chars=MAX_VERSION_ID_CHARS, required=False),
        event_name=read.text("event_name", max_chars=MAX_EVENT_NAME_CHARS),
        event_time=event_time,
        sequencer=sequencer.upper(),
        size=read.integer("size", minimum=0, maximum=MAX_SIZE),
        etag=read.text("etag", max_chars=MAX_ETAG_CHARS, required=False),
        status=status,
        error_code=read.text("error_code", max_chars=MAX_ERROR_CODE_CHARS, required=False),
        # A long message is still useful cut short; refusing the batch would lose the result.
        error_message=read.text("error_message", max_chars=None, required=False)[
            :MAX_ERROR_MESSAGE_CHARS
        ],
        started_at=started_at,
        finished_at=finished_at,
        request_id=read.text("request_id", max_chars=MAX_REQUEST_ID_CHARS, required=False),
        attempt=read.integer("attempt", minimum=1, maximum=MAX_ATTEMPT) or 1,
    )


class _Reader:
    """Reads typed fields from one event object, naming the field in every complaint.

    Absent and null are the same: "is required" for required fields, empty otherwise.
    """

    def __init__(self, item: dict, where: str) -> None:
        self.item = item
        self.where = where

    def _fail(self, name: str, problem: str) -> InvalidBatch:
        return InvalidBatch(f"{self.where}.{name}", problem)

    def text(self, name: str, *, max_chars: int | None, required: bool = True) -> str:
        value = self.item.get(name)
        if value is None:
            if required:
                raise self._fail(name, "is required")
            return ""
        if not isinstance(value, str):
            raise self._fail(name, "must be a string")
        if required and not value:
            raise self._fail(name, "must not be empty")
        if max_chars is not None and len(value) > max_chars:
            raise self._fail(name, f"must be at most {max_chars} characters")
        # PostgreSQL text cannot hold NUL, and a lone surrogate ("\ud800") cannot be encoded.
        if "\x00" in value:
            raise self._fail(name, "must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self._fail(name, "must be valid Unicode (no lone surrogates)") from None
        return value

    def bucket(self, name: str) -> str:
        value = self.text(name, max_chars=63)
        problem = bucket_name_problem(value)
        if problem:
            raise self._fail(name, f"is not a bucket name: it {problem}")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        value = self.item.get(name)
        if value is None:
            return None
        # bool is an int in Python, and 1.0 is a float in JSON: neither is a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, "must be an integer")
        if not minimum <= value <= maximum:
            raise self._fail(name, f"must be between {minimum} and {maximum}")
        return value

    def moment(self, name: str, *, required: bool = True) -> datetime | None:
        value = self.item.get(name)
        if value is None:
            if required:
                raise self._fail(name, "is required")
            return None
        if not isinstance(value, str):
            raise self._fail(name, "must be an ISO 8601 string")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self._fail(name, "must be an ISO 8601 date and time") from None
        if moment.tzinfo is None:
            raise self._fail(name, "must include a timezone (e.g. Z or +00:00)")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise self._fail(name, "is out of range") from None
        if not EARLIEST <= moment < LATEST:
            raise self._fail(name, f"must be between {EARLIEST.year} and {LATEST.year}")
        return moment


def guard_lookup_failures(body: bytes) -> int:
    """The Lambda's count of failed guard lookups since its last report (the body's optional
    ``guard_lookup_failures``); 0 when absent or not a small non-negative integer."""
    if b'"guard_lookup_failures"' not in body:  # the common case: no second parse
        return 0
    try:
        value = json.loads(body).get("guard_lookup_failures")
    except (ValueError, AttributeError):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        return 0
    return value

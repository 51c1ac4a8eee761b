"""Validation of ingest bodies (pure): every bad input is named, nothing partial comes out."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from replication.ingest.schema import (
    MAX_ERROR_MESSAGE_CHARS,
    InvalidBatch,
    TooManyEvents,
    parse_batch,
)
from tests.factories import event_payload


def body(*events, **document) -> bytes:
    return json.dumps({"events": list(events), **document}).encode()


def refusal(raw: bytes) -> InvalidBatch:
    with pytest.raises(InvalidBatch) as caught:
        parse_batch(raw, max_events=1000)
    return caught.value


def test_valid_event_is_parsed_into_typed_values():
    [event] = parse_batch(
        body(
            event_payload(
                key="dir/a file+%.txt",
                sequencer="0055aed6dcd90281e5",
                event_time="2026-11-27T13:00:00+01:00",
                finished_at="2026-11-27T12:00:02.5Z",
                started_at=None,
                version_id=None,
            )
        ),
        max_events=1000,
    )
    assert event.key == "dir/a file+%.txt"
    assert event.sequencer == "0055AED6DCD90281E5"
    assert event.event_time == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert event.lag == timedelta(seconds=2.5)
    assert event.started_at is None
    assert event.version_id == ""
    assert event.size == 1024


def test_missing_attempt_means_first_attempt():
    payload = event_payload()
    del payload["attempt"]
    [event] = parse_batch(body(payload), max_events=1000)
    assert event.attempt == 1


def test_empty_batch_is_valid():
    assert parse_batch(b'{"events": []}', max_events=1000) == []


def test_unknown_fields_are_ignored_so_senders_can_add_fields():
    [event] = parse_batch(body(event_payload(region="eu-west-1")), max_events=1000)
    assert event.status == "copied"


def test_long_error_message_is_kept_cut_short_rather_than_losing_the_result():
    [event] = parse_batch(
        body(event_payload(status="failed", error_message="x" * 10_000)), max_events=1000
    )
    assert len(event.error_message) == MAX_ERROR_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        (b"\xff\xfe{}", "body", "UTF-8"),
        ('{"events": []}'.encode("utf-16"), "body", "UTF-8"),
        (b"", "body", "not valid JSON"),
        (b"{'events': []}", "body", "not valid JSON"),
        (b'{"events": [], }', "body", "not valid JSON"),
        (b'{"events": [NaN]}', "body", "not valid JSON"),
        (b'{"events": [], "x": Infinity}', "body", "not valid JSON"),
        (b'{"events": [' + b"9" * 5000 + b"]}", "body", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body", "nested too deeply"),
        (b"[]", "body", "JSON object"),
        (b'"events"', "body", "JSON object"),
        (b"12", "body", "JSON object"),
        (b"null", "body", "JSON object"),
        (b"{}", "events", "list"),
        (b'{"events": {}}', "events", "list"),
        (b'{"events": [1]}', "events[0]", "object"),
    ],
)
def test_body_that_is_not_a_json_object_with_events_is_refused(raw, field, problem):
    error = refusal(raw)
    assert error.field == field
    assert problem in error.problem


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"source_bucket": None}, "source_bucket", "required"),
        ({"source_bucket": "Not_A_Bucket"}, "source_bucket", "bucket name"),
        ({"destination_bucket": 7}, "destination_bucket", "string"),
        ({"key": ""}, "key", "empty"),
        ({"key": "é" * 600}, "key", "1024 bytes"),
        ({"key": "a\x00b"}, "key", "NUL"),
        ({"key": "\ud800"}, "key", "surrogate"),
        ({"key": ["a"]}, "key", "string"),
        ({"event_name": None}, "event_name", "required"),
        ({"event_name": "x" * 101}, "event_name", "at most 100"),
        ({"sequencer": None}, "sequencer", "required"),
        ({"sequencer": "XYZ"}, "sequencer", "hexadecimal"),
        ({"sequencer": "A" * 33}, "sequencer", "at most 32"),
        ({"sequencer": 12}, "sequencer", "string"),
        ({"status": "ok"}, "status", "copied, deleted, skipped, failed"),
        ({"size": -1}, "size", "between"),
        ({"size": 2**63}, "size", "between"),
        ({"size": 10**300}, "size", "between"),
        ({"size": 1e3}, "size", "integer"),
        ({"size": True}, "size", "integer"),
        ({"size": "12"}, "size", "integer"),
        ({"attempt": 0}, "attempt", "between"),
        ({"attempt": 65536}, "attempt", "between"),
        ({"event_time": None}, "event_time", "required"),
        ({"event_time": "yesterday"}, "event_time", "ISO 8601"),
        ({"event_time": 1764244800}, "event_time", "ISO 8601"),
        ({"event_time": "2026-11-27T12:00:00"}, "event_time", "timezone"),
        ({"event_time": "0001-01-01T00:00:00+05:00"}, "event_time", "range"),
        ({"event_time": "1999-12-31T23:59:59Z"}, "event_time", "between 2000 and 9999"),
        ({"finished_at": "9999-12-31T23:59:59Z"}, "finished_at", "between 2000 and 9999"),
        ({"started_at": "2026-11-27T12:00:03Z"}, "finished_at", "before started_at"),
        ({"etag": "e" * 129}, "etag", "at most 128"),
        ({"request_id": {"id": 1}}, "request_id", "string"),
    ],
)
def test_bad_field_is_refused_by_name(overrides, field, problem):
    error = refusal(body(event_payload(), event_payload(**overrides)))
    assert error.field == f"events[1].{field}"
    assert problem in error.problem


def test_first_bad_field_is_the_one_named():
    error = refusal(body(event_payload(size=-1), event_payload(key=None)))
    assert error.field == "events[0].size"


def test_more_events_than_allowed_is_too_large_not_invalid():
    with pytest.raises(TooManyEvents, match="at most 1000"):
        parse_batch(body(*[event_payload()] * 1001), max_events=1000)
    assert len(parse_batch(body(*[event_payload()] * 1000), max_events=1000)) == 1000

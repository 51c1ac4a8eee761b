"""The handler's pure side: configuration, every event shape AWS sends, keys, error classes."""

import json
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.lambda_function import (
    ConfigError,
    Route,
    UnrecognizedEvent,
    action_for,
    backup_key,
    decode_notification_key,
    describe_error,
    error_class,
    load_config,
    parse_event,
    parts_in_etag,
)
from tests.lambda_support import (
    BACKUP,
    SOURCE,
    eventbridge_event,
    s3_event,
    s3_record,
    sns_envelope,
    sns_event,
    sqs_event,
    sqs_message,
)

TRICKY_KEYS = [
    "plain.txt",
    "with space.txt",
    "plus+sign.txt",
    "percent%20literal.txt",
    "100% done.txt",
    "unicode/été/日本語/🙂.jpg",
    "<script>alert(1)</script>.html",
    "../x",
    "a//b",
    "/leading-slash",
    "trailing/",
    "query?a=1&b=2#frag",
    "tab\tand\nnewline",
    "k" * 1024,
    "é" * 512,  # 1,024 bytes in UTF-8
]


# --- configuration -----------------------------------------------------------------------------


def test_config_with_destination_bucket_routes_every_source_bucket():
    config = load_config({"DESTINATION_BUCKET": BACKUP, "DESTINATION_PREFIX": "copy/"})

    assert config.route_for("any-bucket") == Route(BACKUP, "copy/", "")
    assert config.mirror_deletes is False
    assert config.report_url == ""


def test_config_replication_map_accepts_names_and_objects_with_prefixes():
    mapping = {
        "photos": "photos-bak",
        "logs": {"bucket": "logs-bak", "prefix": "2026/", "source_prefix": "app/"},
    }
    config = load_config({"REPLICATION_MAP": json.dumps(mapping)})

    assert config.route_for("photos") == Route("photos-bak", "", "")
    assert config.route_for("logs") == Route("logs-bak", "2026/", "app/")
    assert config.route_for("unknown") is None
    assert config.backup_buckets == {"photos-bak", "logs-bak"}


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({}, "DESTINATION_BUCKET"),
        ({"DESTINATION_BUCKET": "a", "REPLICATION_MAP": '{"b": "c"}'}, "not both"),
        ({"REPLICATION_MAP": "{not json"}, "not valid JSON"),
        ({"REPLICATION_MAP": '{"src": "src"}'}, "mapped to itself"),
        ({"REPLICATION_MAP": '{"src": {"bucket": "b", "perfix": "x/"}}'}, "unknown fields"),
        ({"DESTINATION_BUCKET": "b", "MIRROR_DELETES": "ture"}, "MIRROR_DELETES"),
        ({"DESTINATION_BUCKET": "b", "REPORT_URL": "https://x/api/v1/events"}, "REPORT_KEY_ID"),
        (
            {
                "DESTINATION_BUCKET": "b",
                "REPORT_URL": "file:///etc/passwd",
                "REPORT_KEY_ID": "k",
                "REPORT_SECRET": "s",
            },
            "http(s)",
        ),
    ],
)
def test_config_refuses_ambiguous_or_broken_settings(environ, complaint):
    with pytest.raises(ConfigError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        load_config(environ)


def test_config_mirror_deletes_reads_common_spellings_of_true():
    for raw in ("true", "TRUE", "1", "yes"):
        assert load_config({"DESTINATION_BUCKET": "b", "MIRROR_DELETES": raw}).mirror_deletes


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_notification_key_decodes_to_the_original_key(key):
    # S3 form-encodes keys in notifications: a space becomes "+", a "+" becomes "%2B".
    assert decode_notification_key(urllib.parse.quote_plus(key)) == key
    assert decode_notification_key(urllib.parse.quote_plus(key, safe="/")) == key


def test_notification_key_plus_is_a_space_and_encoded_plus_is_a_plus():
    assert decode_notification_key("red+flower%2B.jpg") == "red flower+.jpg"


@given(st.text(min_size=1, max_size=300))
def test_notification_key_round_trips_any_text(key):
    encodable = key.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert decode_notification_key(urllib.parse.quote_plus(encodable)) == encodable


def test_backup_key_swaps_source_prefix_for_destination_prefix():
    route = Route(BACKUP, destination_prefix="backup/", source_prefix="app/")

    assert backup_key(route, "app/logs/a b.txt") == "backup/logs/a b.txt"
    assert backup_key(route, "other/file") is None
    assert backup_key(Route(BACKUP), "../x") == "../x"


def test_multipart_etags_reveal_their_part_count():
    assert parts_in_etag('"71046e2ca1918d077bd783b79860a531-3"') == 3
    assert parts_in_etag("71046e2ca1918d077bd783b79860a531-1") == 1
    assert parts_in_etag('"5d41402abc4b2a76b9719d911017c592"') == 0


# --- event shapes -------------------------------------------------------------------------------


def test_s3_notification_gives_decoded_key_and_its_fields():
    record = s3_record("dir/a b+c.txt", etag='"abc123"', size=7, version_id="v1", sequencer="0A1")

    (event,) = parse_event(s3_event(record)).records

    assert event.bucket == SOURCE
    assert event.key == "dir/a b+c.txt"
    assert event.event_name == "ObjectCreated:Put"
    assert (event.etag, event.size, event.version_id, event.sequencer) == ("abc123", 7, "v1", "0A1")
    assert event.attempt == 1
    assert event.message_id is None


def test_s3_test_event_yields_nothing_to_do():
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": SOURCE}

    assert parse_event(test_event).records == []


def test_sns_event_carries_the_s3_notification():
    parsed = parse_event(sns_event(s3_event(s3_record("x y"))))

    assert [event.key for event in parsed.records] == ["x y"]
    assert parsed.from_sqs is False


def test_sqs_bodies_carry_notifications_directly_or_in_sns_envelopes():
    direct = sqs_message(json.dumps(s3_event(s3_record("one"))), message_id="m1", receive_count=3)
    wrapped = sqs_message(json.dumps(sns_envelope(s3_event(s3_record("two")))), message_id="m2")
    bridged = sqs_message(json.dumps(eventbridge_event("three")), message_id="m3")

    parsed = parse_event(sqs_event(direct, wrapped, bridged))

    assert parsed.from_sqs is True
    assert [(e.key, e.message_id, e.attempt) for e in parsed.records] == [
        ("one", "m1", 3),
        ("two", "m2", 1),
        ("three", "m3", 1),
    ]


def test_sqs_bad_message_is_set_aside_without_losing_the_good_ones():
    good = sqs_message(json.dumps(s3_event(s3_record("good"))), message_id="good")
    bad = sqs_message("this is not json", message_id="bad")
    test_event = sqs_message(json.dumps({"Event": "s3:TestEvent"}), message_id="test")

    parsed = parse_event(sqs_event(bad, good, test_event))

    assert [event.key for event in parsed.records] == ["good"]
    assert [message.message_id for message in parsed.bad_messages] == ["bad"]


@pytest.mark.parametrize(
    ("reason", "event_name"),
    [
        ("PutObject", "ObjectCreated:Put"),
        ("POST Object", "ObjectCreated:Post"),
        ("CopyObject", "ObjectCreated:Copy"),
        ("CompleteMultipartUpload", "ObjectCreated:CompleteMultipartUpload"),
    ],
)
def test_eventbridge_object_created_maps_to_notification_names(reason, event_name):
    (event,) = parse_event(eventbridge_event("a+b c.txt", reason=reason, etag="e1")).records

    assert event.event_name == event_name
    # Decoded like a notification key (as AWS's Powertools does); the delivered form is kept.
    assert (event.key, event.delivered_key) == ("a b c.txt", "a+b c.txt")
    assert event.event_time == "2026-11-27T12:00:00Z"


@pytest.mark.parametrize(
    ("reason", "deletion_type", "event_name"),
    [
        ("DeleteObject", "Permanently Deleted", "ObjectRemoved:Delete"),
        ("DeleteObject", "Delete Marker Created", "ObjectRemoved:DeleteMarkerCreated"),
        ("Lifecycle Expiration", "Permanently Deleted", "LifecycleExpiration:Delete"),
        (
            "Lifecycle Expiration",
            "Delete Marker Created",
            "LifecycleExpiration:DeleteMarkerCreated",
        ),
    ],
)
def test_eventbridge_object_deleted_maps_to_notification_names(reason, deletion_type, event_name):
    event_in = eventbridge_event(
        "k", detail_type="Object Deleted", reason=reason, deletion_type=deletion_type
    )

    (event,) = parse_event(event_in).records

    assert event.event_name == event_name
    assert action_for(event.event_name) == "delete"


def test_eventbridge_other_object_events_are_ignored():
    (event,) = parse_event(eventbridge_event("k", detail_type="Object Tags Added")).records

    assert action_for(event.event_name) == "ignore"


@pytest.mark.parametrize(
    ("event_name", "action"),
    [
        ("ObjectCreated:Put", "copy"),
        ("ObjectCreated:Post", "copy"),
        ("ObjectCreated:Copy", "copy"),
        ("ObjectCreated:CompleteMultipartUpload", "copy"),
        ("ObjectRemoved:Delete", "delete"),
        ("ObjectRemoved:DeleteMarkerCreated", "delete"),
        ("LifecycleExpiration:Delete", "delete"),
        ("LifecycleTransition", "ignore"),
        ("ObjectRestore:Completed", "ignore"),
        ("ObjectTagging:Put", "ignore"),
        ("ReducedRedundancyLostObject", "ignore"),
        ("Replication:OperationFailedReplication", "ignore"),
    ],
)
def test_event_names_map_to_copy_delete_or_ignore(event_name, action):
    assert action_for(event_name) == action


@pytest.mark.parametrize(
    "event",
    [
        [],
        "text",
        {"hello": "world"},
        {"Records": [{"x": 1}]},
        {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {}},
    ],
)
def test_unknown_invocation_shapes_are_refused_by_name(event):
    with pytest.raises(UnrecognizedEvent):
        parse_event(event)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("AccessDenied", "Access Denied", "access denied"),
        ("AccessDenied", "not authorized to perform: kms:Decrypt", "kms"),
        ("KMS.DisabledException", "key is disabled", "kms"),
        ("NoSuchKey", "", "not found"),
        ("NoSuchBucket", "", "not found"),
        ("SlowDown", "Please reduce your request rate.", "throttled"),
        ("ReadTimeoutError", "Read timeout on endpoint URL", "timeout"),
        ("ConnectTimeoutError", "", "timeout"),
        ("EndpointConnectionError", "", "connection"),
        ("InternalError", "", "error"),
    ],
)
def test_errors_are_classified_for_the_report(code, message, expected):
    assert error_class(code, message) == expected


def test_head_status_codes_become_aws_error_codes():
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    assert describe_error(error) == ("AccessDenied", "access denied: Forbidden (HeadObject)")

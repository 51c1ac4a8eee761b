"""The handler's routing: envelopes, partial SQS batches, ignored events, the recursion guard."""

import json

import pytest

from replication.lambda_function import ReplicationFailed, UnrecognizedEvent
from tests.lambda_support import (
    BACKUP,
    SOURCE,
    answer_with_error,
    backup_keys,
    eventbridge_event,
    invoke,
    make_buckets,
    put_event,
    s3_event,
    s3_record,
    sns_envelope,
    sns_event,
    sqs_event,
    sqs_message,
)


def test_handler_ignores_s3_test_event(s3, monkeypatch):
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": SOURCE}

    assert invoke(monkeypatch, s3, event) == {
        "copied": 0,
        "skipped": 0,
        "deleted": 0,
        "failed": 0,
        "held": 0,
    }


def test_handler_copies_from_sns_event(s3, monkeypatch):
    event = sns_event(put_event(s3, "via sns.txt", b"sns"))

    assert invoke(monkeypatch, s3, event)["copied"] == 1
    assert backup_keys(s3) == ["via sns.txt"]


def test_handler_decodes_eventbridge_keys_like_notification_keys(s3, monkeypatch, caplog):
    etag = s3.put_object(Bucket=SOURCE, Key="a b+c.txt", Body=b"eb")["ETag"]
    event = eventbridge_event("a+b%2Bc.txt", etag=etag, size=2)

    assert invoke(monkeypatch, s3, event)["copied"] == 1
    assert backup_keys(s3) == ["a b+c.txt"]
    assert "copied as delivered" not in caplog.text


def test_handler_copies_an_eventbridge_key_as_delivered_when_only_that_exists(
    s3, monkeypatch, caplog
):
    etag = s3.put_object(Bucket=SOURCE, Key="a+b c.txt", Body=b"eb")["ETag"]
    event = eventbridge_event("a+b c.txt", etag=etag, size=2)

    assert invoke(monkeypatch, s3, event)["copied"] == 1
    assert backup_keys(s3) == ["a+b c.txt"]
    assert "key copied as delivered: its decoded form does not exist" in caplog.text


def test_handler_prefers_the_decoded_eventbridge_key_when_both_exist(s3, monkeypatch):
    s3.put_object(Bucket=SOURCE, Key="a+b.txt", Body=b"raw")
    s3.put_object(Bucket=SOURCE, Key="a b.txt", Body=b"decoded")

    assert invoke(monkeypatch, s3, eventbridge_event("a+b.txt"))["copied"] == 1
    assert backup_keys(s3) == ["a b.txt"]


def test_handler_sqs_batch_returns_only_bad_messages_as_item_failures(s3, monkeypatch):
    good = sqs_message(json.dumps(put_event(s3, "good.txt")), message_id="good")
    wrapped = sqs_message(json.dumps(sns_envelope(put_event(s3, "wrapped.txt"))), message_id="sns")
    bad = sqs_message("{truncated", message_id="bad")

    result = invoke(monkeypatch, s3, sqs_event(good, bad, wrapped))

    assert result["batchItemFailures"] == [{"itemIdentifier": "bad"}]
    assert result["copied"] == 2
    assert backup_keys(s3) == ["good.txt", "wrapped.txt"]


def test_handler_sqs_failed_copy_is_an_item_failure_not_an_exception(s3, monkeypatch):
    ok = sqs_message(json.dumps(put_event(s3, "ok.txt")), message_id="ok")
    denied = sqs_message(json.dumps(put_event(s3, "denied.txt")), message_id="denied")
    answer_with_error(
        s3,
        "CopyObject",
        status=403,
        code="AccessDenied",
        when=lambda url: "denied.txt" in url,
    )

    result = invoke(monkeypatch, s3, sqs_event(ok, denied))

    assert result["batchItemFailures"] == [{"itemIdentifier": "denied"}]
    assert (result["copied"], result["failed"]) == (1, 1)


def test_handler_ignores_events_from_its_own_backup_bucket(s3, monkeypatch):
    s3.put_object(Bucket=BACKUP, Key="doc.txt", Body=b"copy")
    event = s3_event(s3_record("doc.txt", bucket=BACKUP))

    result = invoke(monkeypatch, s3, event)

    assert result == {"copied": 0, "skipped": 1, "deleted": 0, "failed": 0, "held": 0}
    assert backup_keys(s3) == ["doc.txt"]


def test_handler_ignores_backup_buckets_of_every_pair_in_replication_map(s3, monkeypatch):
    make_buckets(s3, "logs-src", "logs-bak")
    s3.put_object(Bucket="logs-bak", Key="x", Body=b"copy")
    mapping = json.dumps({SOURCE: BACKUP, "logs-src": "logs-bak"})

    result = invoke(
        monkeypatch, s3, s3_event(s3_record("x", bucket="logs-bak")), REPLICATION_MAP=mapping
    )

    assert result["skipped"] == 1
    assert backup_keys(s3) == []


def test_handler_skips_bucket_missing_from_replication_map(s3, monkeypatch):
    event = s3_event(s3_record("x", bucket="stranger"))

    result = invoke(monkeypatch, s3, event, REPLICATION_MAP=json.dumps({SOURCE: BACKUP}))

    assert result["skipped"] == 1


@pytest.mark.parametrize(
    "event_name", ["LifecycleTransition", "ObjectRestore:Completed", "ObjectTagging:Put"]
)
def test_handler_reports_events_without_new_content_as_skipped(s3, monkeypatch, event_name):
    s3.put_object(Bucket=SOURCE, Key="k", Body=b"x")

    result = invoke(monkeypatch, s3, s3_event(s3_record("k", event_name=event_name)))

    assert result["skipped"] == 1
    assert backup_keys(s3) == []


def test_handler_refuses_an_unrecognised_invocation(s3, monkeypatch):
    with pytest.raises(UnrecognizedEvent):
        invoke(monkeypatch, s3, {"hello": "world"})


def test_handler_writes_one_json_log_line_per_record(s3, monkeypatch, caplog):
    event = s3_event(*put_event(s3, "a")["Records"], *put_event(s3, "b")["Records"])
    caplog.set_level("INFO", logger="backupsite.replicator")

    invoke(monkeypatch, s3, event)

    lines = [json.loads(r.getMessage()) for r in caplog.records if "record" in r.getMessage()]
    assert [(line["key"], line["status"]) for line in lines] == [("a", "copied"), ("b", "copied")]
    assert all(line["request_id"] for line in lines)


def test_handler_raises_after_processing_every_record(s3, monkeypatch):
    first = put_event(s3, "first.txt")
    denied = put_event(s3, "denied.txt")
    last = put_event(s3, "last.txt")
    answer_with_error(
        s3,
        "CopyObject",
        status=403,
        code="AccessDenied",
        when=lambda url: "denied.txt" in url,
    )
    event = s3_event(*first["Records"], *denied["Records"], *last["Records"])

    with pytest.raises(ReplicationFailed):
        invoke(monkeypatch, s3, event)

    assert backup_keys(s3) == ["first.txt", "last.txt"]

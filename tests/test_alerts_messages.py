"""What alerts say in each format: subject, e-mail text, webhook JSON, Slack text (pure)."""

import json
from datetime import UTC, datetime, timedelta

from replication.alerts.messages import (
    Message,
    slack_payload,
    subject,
    text,
    webhook_payload,
)
from replication.alerts.rules import Kind

SINCE = datetime(2026, 11, 28, 3, 2, tzinfo=UTC)
URL = "https://backup.example.com/pairs/photos/"
REASON = "3 missing since 03:02 UTC (reconcile #4)"


def message(**fields) -> Message:
    values = {
        "kind": Kind.ALERT,
        "pair": "photos",
        "state": "critical",
        "previous_state": "ok",
        "reason": REASON,
        "since": SINCE,
        "at": SINCE,
        "url": URL,
        "notification_id": 17,
    }
    return Message(**(values | fields))


def test_an_alert_names_the_pair_state_and_reason_in_its_subject():
    assert subject(message()) == f"[backupsite] CRITICAL: photos: {REASON}"


def test_a_resolution_says_what_the_pair_was():
    resolved = message(kind=Kind.RESOLVED, state="ok", previous_state="critical", reason="in sync")
    assert subject(resolved) == "[backupsite] RESOLVED: photos is OK again (was CRITICAL)"


def test_a_reminder_says_how_long_the_pair_has_been_critical():
    reminder = message(kind=Kind.REMINDER, at=SINCE + timedelta(hours=2), reminder=2)
    assert subject(reminder) == f"[backupsite] Still CRITICAL: photos for 2 h: {REASON}"


def test_a_subject_is_one_line_whatever_the_reason():
    assert "\n" not in subject(message(reason="run failed:\nTraceback..."))


def test_the_email_text_links_to_the_pair_page_and_names_its_states():
    body = text(message())
    assert "Pair:    photos" in body
    assert "State:   critical (was ok)" in body
    assert "Since:   2026-11-28 03:02 UTC" in body
    assert f"Reason:  {REASON}" in body
    assert f"Details: {URL}" in body


def test_the_webhook_payload_is_the_documented_json():
    payload = webhook_payload(message(at=SINCE + timedelta(seconds=30)))
    assert payload == {
        "version": 1,
        "id": 17,
        "event": "alert",
        "pair": "photos",
        "state": "critical",
        "previous_state": "ok",
        "reason": REASON,
        "since": "2026-11-28T03:02:00Z",
        "sent_at": "2026-11-28T03:02:30Z",
        "reminder": 0,
        "url": URL,
        "summary": f"CRITICAL: photos: {REASON}",
    }
    json.dumps(payload)  # serialisable as it stands


def test_the_webhook_payload_of_a_first_evaluation_has_no_previous_state():
    assert webhook_payload(message(previous_state=""))["previous_state"] is None


def test_the_slack_text_links_the_pair_and_escapes_slack_markup():
    payload = slack_payload(message(reason="key <a&b> missing"))
    assert set(payload) == {"text"}
    assert f"<{URL}|photos>" in payload["text"]
    assert "key &lt;a&amp;b&gt; missing" in payload["text"]
    assert payload["text"].startswith(":red_circle:")


def test_a_test_message_names_its_channel():
    test = message(kind=Kind.TEST, pair="", state="", previous_state="", channel="ops mail")
    assert subject(test) == "[backupsite] Test notification to ops mail"
    assert "ops mail" in text(test)
    assert "ops mail" in slack_payload(test)["text"]

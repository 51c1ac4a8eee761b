"""The flapping damper: a pair that flips state every minute sends its first messages, then
holds the rest and sends one summary when it settles, or at most hourly while it does not."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from replication.alerts import delivery
from replication.alerts.rules import flapping, summary_due
from replication.alerts.tasks import evaluate_health
from replication.models import AlertChannel, Notification, ReconcileRun
from replication.status.health import State
from tests.factories import make_pair

START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


# --- The rules (pure) -------------------------------------------------------------------------


def test_flapping_counts_the_changes_that_send_messages_within_the_window():
    ok, critical, paused = State.OK, State.CRITICAL, State.PAUSED
    changes = [
        (None, ok, START),  # a first evaluation to ok sends nothing
        (ok, critical, START + 10 * MIN),
        (critical, ok, START + 20 * MIN),
        (ok, paused, START + 25 * MIN),  # sends nothing
        (paused, ok, START + 26 * MIN),  # sends nothing
        (ok, critical, START + 30 * MIN),
    ]
    assert not flapping(changes, START + 20 * MIN, threshold=3, window=HOUR)
    assert flapping(changes, START + 30 * MIN, threshold=3, window=HOUR)
    # The change that started it all is out of a 15-minute window.
    assert not flapping(changes, START + 30 * MIN, threshold=3, window=15 * MIN)
    assert not flapping(changes, START + 30 * MIN, threshold=0, window=HOUR)


def test_a_summary_is_due_once_the_pair_settles_or_the_oldest_held_message_waited_a_window():
    settle, window = 15 * MIN, HOUR
    held_since = START
    assert not summary_due(held_since, START + 50 * MIN, START + 60 * MIN - MIN, settle, window)
    assert summary_due(held_since, START + 30 * MIN, START + 45 * MIN, settle, window)
    assert summary_due(held_since, START + 59 * MIN, START + 60 * MIN, settle, window)


# --- End to end -------------------------------------------------------------------------------


def reconciled(pair, verdict: str, **counts) -> None:
    ReconcileRun.objects.create(
        pair=pair, status="succeeded", verdict=verdict, finished_at=datetime.now(UTC), **counts
    )


def flip(pair, minute: int) -> None:
    """At START + minute, the pair goes critical on even minutes (its backup bucket is gone)
    and ok on odd ones."""
    with time_machine.travel(START + minute * MIN, tick=False):
        if minute % 2 == 0:
            ReconcileRun.objects.create(
                pair=pair,
                status="failed",
                error="backup bucket photos-bak does not exist",
                finished_at=datetime.now(UTC),
            )
        else:
            reconciled(pair, "in_sync")
        evaluate_health.delay().get()


def tick_at(when: datetime) -> dict:
    with time_machine.travel(when, tick=False):
        return evaluate_health.delay().get()


@pytest.fixture
def photos(db, settings):
    settings.SITE_URL = "https://backup.example.com"
    settings.ALERT_REMINDER_MINUTES = 0
    pair = make_pair(name="photos", source_bucket="photos-src", backup_bucket="photos-bak")
    with time_machine.travel(START - HOUR, tick=False):
        reconciled(pair, "in_sync")
        evaluate_health.delay().get()  # ok, known: the first flips below are changes
    AlertChannel.objects.create(name="ops", kind="email", target="o@example.com", all_pairs=True)
    return pair


def subjects(mailoutbox) -> list[str]:
    return [m.subject.split(":")[0] for m in mailoutbox]


@pytest.mark.django_db
def test_a_pair_flipping_every_minute_sends_its_first_messages_then_one_summary_once_settled(
    photos, mailoutbox
):
    for minute in range(30):  # critical, ok, critical, ... every minute for half an hour
        flip(photos, minute)
    assert subjects(mailoutbox) == ["[backupsite] CRITICAL", "[backupsite] RESOLVED"]
    assert Notification.objects.filter(status="held").count() == 28

    # Settled (ok since minute 29) for less than ALERT_FLAP_SETTLE_MINUTES: still held.
    tick_at(START + 29 * MIN + 14 * MIN)
    assert len(mailoutbox) == 2
    tick_at(START + 29 * MIN + 15 * MIN)
    assert len(mailoutbox) == 3
    summary = mailoutbox[2]
    assert summary.subject.startswith("[backupsite] FLAPPING: photos is OK now: ")
    assert "changed state 28 times between 2026-11-27 10:02 and 2026-11-27 10:29 UTC" in (
        summary.subject
    )
    assert "(28 messages held)" in summary.subject
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent", "summarised"}
    assert Notification.objects.get(kind="summary").status == "sent"

    # Once summed up, nothing is sent again for those changes.
    tick_at(START + 2 * HOUR)
    assert len(mailoutbox) == 3


@pytest.mark.django_db
def test_a_pair_that_keeps_flapping_gets_at_most_one_summary_an_hour(photos, mailoutbox):
    for minute in range(150):  # two and a half hours of flapping
        flip(photos, minute)
    summaries = [m for m in mailoutbox if "FLAPPING" in m.subject]
    assert subjects(mailoutbox)[:2] == ["[backupsite] CRITICAL", "[backupsite] RESOLVED"]
    # Held from minute 2; a summary when the oldest held waited an hour: at 62 and 123.
    assert len(summaries) == 2
    assert len(mailoutbox) == 4


@pytest.mark.django_db
def test_the_damper_can_be_turned_off(photos, mailoutbox, settings):
    settings.ALERT_FLAP_CHANGES = 0
    for minute in range(6):
        flip(photos, minute)
    assert len(mailoutbox) == 6
    assert not Notification.objects.filter(status="held").exists()


@pytest.mark.django_db
def test_a_pair_changing_rarely_is_never_held(photos, mailoutbox):
    for hours in range(4):  # critical then ok, once every hour and a half
        flip(photos, hours * 90)
        flip(photos, hours * 90 + 21)
    assert len(mailoutbox) == 8
    assert not Notification.objects.filter(status="held").exists()


@pytest.mark.django_db
def test_two_summaries_at_once_sum_up_once(photos, mailoutbox):
    for minute in range(10):
        flip(photos, minute)
    later = START + 9 * MIN + 20 * MIN
    first = delivery.release_summaries(later)
    second = delivery.release_summaries(later)
    assert len(first) == 1 and second == []

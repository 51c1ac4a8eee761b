"""Alerts end to end: health changes recorded, messages sent once per channel, retried,
reminded, never duplicated (locmem mail, a local HTTP receiver checking signatures)."""

import socket
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from replication.alerts import delivery, evaluate
from replication.alerts.tasks import deliver_notification, evaluate_health
from replication.models import AlertChannel, HealthChange, Notification, ReconcileRun
from tests.alerts_support import running_receiver
from tests.factories import make_pair, record_events, record_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings):
    """The receivers here listen on loopback, which webhooks may not reach by default."""
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def receiver():
    yield from running_receiver()


@pytest.fixture
def photos(db):
    return make_pair(name="photos", source_bucket="photos-src", backup_bucket="photos-bak")


@pytest.fixture
def channels(photos, receiver, settings):
    settings.SITE_URL = "https://backup.example.com"
    email = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    webhook = AlertChannel.objects.create(
        name="hook", kind="webhook", target=receiver.url + "/hook"
    )
    slack = AlertChannel.objects.create(name="slack", kind="slack", target=receiver.url + "/slack")
    for channel in (email, webhook, slack):
        channel.pairs.add(photos)
    receiver.secret = webhook.secret
    return email, webhook, slack


@pytest.fixture
def eager_retries():
    """Applied eagerly, a task's retries run at once, one after another (no countdown);
    Celery only chains them when eager tasks do not propagate their exceptions."""
    from backupsite.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def reconciled(pair, verdict: str, **counts) -> ReconcileRun:
    """A finished reconcile of ``pair`` that found ``verdict``, with its findings: what
    drives its health here."""
    return record_run(pair, verdict, **counts)


def tick():
    """One beat tick of the evaluation task."""
    return evaluate_health.delay().get()


class TestTransitions:
    def test_ok_critical_ok_sends_one_alert_and_one_resolution_per_channel(
        self, photos, channels, receiver, mailoutbox
    ):
        reconciled(photos, "in_sync")
        tick()
        reconciled(photos, "out_of_sync", missing=3)
        tick()
        tick()
        reconciled(photos, "in_sync")
        tick()
        tick()

        assert [m.subject.split(":")[0] for m in mailoutbox] == [
            "[backupsite] CRITICAL",
            "[backupsite] RESOLVED",
        ]
        assert mailoutbox[0].to == ["ops@example.com"]
        assert "3 missing" in mailoutbox[0].subject
        assert "https://backup.example.com/pairs/photos/" in mailoutbox[0].body
        hooks = receiver.posts("/hook")
        assert [(h["json"]["event"], h["json"]["state"]) for h in hooks] == [
            ("alert", "critical"),
            ("resolved", "ok"),
        ]
        assert all(h["signed"] for h in hooks)
        assert hooks[0]["json"]["pair"] == "photos"
        assert hooks[0]["json"]["url"] == "https://backup.example.com/pairs/photos/"
        assert "3 missing" in hooks[0]["json"]["reason"]
        slack = receiver.posts("/slack")
        assert len(slack) == 2
        assert "<https://backup.example.com/pairs/photos/|photos>" in slack[0]["json"]["text"]
        assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}

    def test_every_change_is_recorded_with_its_reason(self, photos):
        reconciled(photos, "in_sync")
        tick()
        reconciled(photos, "out_of_sync", missing=3)
        tick()
        changes = list(HealthChange.objects.filter(pair=photos).order_by("sequence"))
        assert [(c.from_state, c.to_state) for c in changes] == [
            ("", "ok"),
            ("ok", "critical"),
        ]
        assert "3 missing" in changes[1].reason
        assert changes[1].reasons[0] == changes[1].reason

    def test_a_first_evaluation_of_a_healthy_pair_sends_nothing(self, photos, channels, mailoutbox):
        reconciled(photos, "in_sync")
        tick()
        assert HealthChange.objects.filter(pair=photos, to_state="ok").exists()
        assert mailoutbox == []
        assert not Notification.objects.exists()

    def test_a_first_evaluation_of_a_critical_pair_alerts(self, photos, channels, mailoutbox):
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        assert len(mailoutbox) == 1
        assert "CRITICAL" in mailoutbox[0].subject

    def test_channels_alert_only_on_their_pairs_unless_set_for_all(self, photos, mailoutbox):
        other = make_pair(name="other")
        AlertChannel.objects.create(name="mine", kind="email", target="a@example.com").pairs.add(
            other
        )
        AlertChannel.objects.create(
            name="everything", kind="email", target="all@example.com", all_pairs=True
        )
        AlertChannel.objects.create(
            name="off", kind="email", target="off@example.com", all_pairs=True, enabled=False
        )
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        assert [m.to for m in mailoutbox] == [["all@example.com"]]

    def test_a_finished_reconcile_alerts_at_once_not_at_the_next_tick(self, s3, mailoutbox):
        from replication import tasks

        with time_machine.travel(timezone.now() - timedelta(hours=1)):
            s3.put_object(Bucket="photos-src", Key="lost.jpg", Body=b"x")
        pair = make_pair(
            name="photos", source_bucket="photos-src", backup_bucket="photos-bak", grace_seconds=60
        )
        AlertChannel.objects.create(
            name="ops", kind="email", target="o@example.com", all_pairs=True
        )
        run, _ = tasks.start_reconcile(pair, trigger="manual")
        assert ReconcileRun.objects.get(pk=run.pk).verdict == "out_of_sync"
        assert HealthChange.objects.get(pair=pair).to_state == "critical"
        (alert,) = mailoutbox
        assert alert.subject.startswith(
            "[backupsite] CRITICAL: photos: 1 object lacking, behind by 1 h: 1 missing since "
        )
        assert alert.subject.endswith("(longer than the 1 min grace period)")


class TestReminders:
    def test_a_pair_that_stays_critical_is_reminded_of_each_interval(
        self, photos, channels, mailoutbox, settings
    ):
        settings.ALERT_REMINDER_MINUTES = 60
        start = timezone.now()
        reconciled(photos, "out_of_sync", missing=3)
        with time_machine.travel(start, tick=False) as clock:
            tick()
            clock.move_to(start + timedelta(minutes=59))
            tick()
            clock.move_to(start + timedelta(minutes=61))
            tick()
            tick()
            clock.move_to(start + timedelta(hours=3, minutes=5))
            tick()
        subjects = [m.subject for m in mailoutbox]
        assert len(subjects) == 3
        assert subjects[0].startswith("[backupsite] CRITICAL: photos")
        assert subjects[1].startswith("[backupsite] Still CRITICAL: photos for 1 h 1 min")
        assert subjects[2].startswith("[backupsite] Still CRITICAL: photos for 3 h 5 min")
        reminders = Notification.objects.filter(kind="reminder", channel__kind="webhook")
        assert sorted(reminders.values_list("sequence", flat=True)) == [1, 3]

    def test_reminders_stop_when_the_pair_recovers(self, photos, channels, mailoutbox, settings):
        settings.ALERT_REMINDER_MINUTES = 60
        start = timezone.now()
        reconciled(photos, "out_of_sync", missing=3)
        with time_machine.travel(start, tick=False) as clock:
            tick()
            clock.move_to(start + timedelta(minutes=30))
            reconciled(photos, "in_sync")
            tick()
            clock.move_to(start + timedelta(hours=2))
            tick()
        assert [m.subject.split(":")[0] for m in mailoutbox] == [
            "[backupsite] CRITICAL",
            "[backupsite] RESOLVED",
        ]

    def test_a_zero_interval_sends_no_reminders(self, photos, channels, mailoutbox, settings):
        settings.ALERT_REMINDER_MINUTES = 0
        start = timezone.now()
        reconciled(photos, "out_of_sync", missing=3)
        with time_machine.travel(start, tick=False) as clock:
            tick()
            clock.move_to(start + timedelta(hours=5))
            tick()
        assert len(mailoutbox) == 1


class TestFailures:
    def test_a_failing_channel_is_recorded_and_does_not_stop_the_others(
        self, photos, channels, receiver, mailoutbox
    ):
        receiver.statuses = {"/hook": [500]}
        webhook = channels[1]
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        assert len(mailoutbox) == 1
        assert len(receiver.posts("/slack")) == 1
        failed = Notification.objects.get(channel=webhook)
        assert (failed.status, failed.attempts) == ("pending", 1)
        assert failed.last_error == "HTTP 500 Internal Server Error"
        assert failed.next_attempt_at > timezone.now()
        assert Notification.objects.get(channel=channels[0]).status == "sent"

    def test_an_unreachable_channel_does_not_stop_the_others(self, photos, mailoutbox):
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # a port of ours that nothing listens on: refused
        port = closed.getsockname()[1]
        AlertChannel.objects.create(
            name="gone", kind="webhook", target=f"http://127.0.0.1:{port}/x", all_pairs=True
        )
        AlertChannel.objects.create(
            name="ops", kind="email", target="o@example.com", all_pairs=True
        )
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        assert len(mailoutbox) == 1
        gone = Notification.objects.get(channel__name="gone")
        assert gone.status == "pending"
        assert gone.last_error.startswith("could not connect")
        closed.close()

    def test_a_webhook_that_never_answers_times_out(self, photos, settings, mailoutbox):
        settings.ALERT_HTTP_TIMEOUT = 0.2
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # connections are queued by the kernel and never answered
        AlertChannel.objects.create(
            name="silent",
            kind="webhook",
            target=f"http://127.0.0.1:{silent.getsockname()[1]}/",
            all_pairs=True,
        )
        AlertChannel.objects.create(
            name="ops", kind="email", target="o@example.com", all_pairs=True
        )
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        silent.close()
        assert Notification.objects.get(channel__name="silent").last_error == (
            "could not connect to the target, or it gave no answer within 0.2 s"
        )
        assert len(mailoutbox) == 1

    def test_a_redirect_is_a_failure_not_followed(self, photos, channels, receiver):
        webhook = channels[1]
        receiver.statuses = {"/hook": [302]}
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        assert Notification.objects.get(channel=webhook).last_error == "HTTP 302 Found"
        assert receiver.posts("/elsewhere") == []

    def test_the_delivery_task_retries_a_failure_until_it_is_sent(
        self, photos, channels, receiver, eager_retries
    ):
        webhook = channels[1]
        reconciled(photos, "out_of_sync", missing=1)
        receiver.statuses = {"/hook": [503, 503, 503]}
        tick()  # the first attempt, made inline without a broker, fails
        notification = Notification.objects.get(channel=webhook)
        # On a worker the task retries with backoff; applied eagerly, its retries run at once.
        deliver_notification.apply(args=[notification.id])
        notification.refresh_from_db()
        assert (notification.status, notification.attempts) == ("sent", 4)
        assert [r["signed"] for r in receiver.posts("/hook")] == [True] * 4

    def test_a_delivery_that_keeps_failing_is_marked_failed_after_its_attempts(
        self, photos, channels, receiver, settings, eager_retries
    ):
        webhook = channels[1]
        reconciled(photos, "out_of_sync", missing=1)
        receiver.statuses = {"/hook": [500] * 20}
        tick()
        notification = Notification.objects.get(channel=webhook)
        deliver_notification.apply(args=[notification.id])
        notification.refresh_from_db()
        assert (notification.status, notification.attempts) == (
            "failed",
            settings.ALERT_DELIVERY_ATTEMPTS,
        )
        assert len(receiver.posts("/hook")) == settings.ALERT_DELIVERY_ATTEMPTS

    def test_retries_are_declared_on_the_delivery_task(self, settings):
        task = deliver_notification
        assert task.max_retries == settings.ALERT_DELIVERY_ATTEMPTS - 1
        assert (task.retry_backoff, task.retry_jitter) == (settings.ALERT_RETRY_BACKOFF, True)
        assert task.autoretry_for

    def test_a_later_evaluation_resends_a_delivery_whose_retry_was_lost(
        self, photos, channels, receiver
    ):
        webhook = channels[1]
        start = timezone.now()
        reconciled(photos, "out_of_sync", missing=1)
        receiver.statuses = {"/hook": [500]}
        with time_machine.travel(start, tick=False) as clock:
            tick()
            clock.move_to(start + timedelta(minutes=1))
            tick()  # the retry is not due yet: Celery's own retry has the first go
            assert len(receiver.posts("/hook")) == 1
            clock.move_to(start + timedelta(minutes=10))
            tick()
        notification = Notification.objects.get(channel=webhook)
        assert (notification.status, notification.attempts) == ("sent", 2)
        assert len(receiver.posts("/hook")) == 2

    def test_a_disabled_channel_gets_no_pending_delivery(self, photos, channels, receiver):
        webhook = channels[1]
        reconciled(photos, "out_of_sync", missing=1)
        receiver.statuses = {"/hook": [500]}
        tick()
        AlertChannel.objects.filter(pk=webhook.pk).update(enabled=False)
        notification = Notification.objects.get(channel=webhook)
        assert delivery.attempt(notification.id) == delivery.Outcome.FAILED
        notification.refresh_from_db()
        assert notification.last_error == "the channel was disabled before delivery"


class TestNoDuplicates:
    def test_a_redelivered_evaluation_sends_nothing_new(self, photos, channels, mailoutbox):
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        tick()
        evaluate_health.delay([photos.pk]).get()
        assert len(mailoutbox) == 1
        assert HealthChange.objects.count() == 1
        assert Notification.objects.count() == 3

    def test_an_evaluator_that_read_a_stale_state_records_nothing(
        self, photos, channels, mailoutbox, monkeypatch
    ):
        """Two evaluators that both saw no change yet: the second one's write is refused."""
        reconciled(photos, "out_of_sync", missing=1)
        stale = evaluate.latest_changes([photos.pk])  # read before anyone recorded the change
        tick()
        monkeypatch.setattr(evaluate, "latest_changes", lambda ids: stale)
        again = evaluate.evaluate()
        assert (again.changes, again.notifications) == ([], [])
        assert HealthChange.objects.count() == 1
        assert Notification.objects.count() == 3
        assert len(mailoutbox) == 1

    def test_a_notification_delivered_twice_is_sent_once(self, photos, channels, receiver):
        webhook = channels[1]
        reconciled(photos, "out_of_sync", missing=1)
        tick()
        notification = Notification.objects.get(channel=webhook)
        assert delivery.attempt(notification.id) == delivery.Outcome.SKIPPED
        deliver_notification.apply(args=[notification.id])
        assert len(receiver.posts("/hook")) == 1

    def test_a_delivery_whose_worker_died_mid_send_is_sent_after_its_lease(
        self, photos, channels, receiver
    ):
        webhook = channels[1]
        reconciled(photos, "out_of_sync", missing=1)
        receiver.statuses = {"/hook": [500]}
        tick()
        notification = Notification.objects.get(channel=webhook)
        claimed_at = timezone.now()
        Notification.objects.filter(pk=notification.pk).update(
            status="sending", claimed_at=claimed_at
        )
        assert delivery.attempt(notification.id, claimed_at + timedelta(seconds=30)) == "skipped"
        later = claimed_at + delivery.LEASE + timedelta(seconds=1)
        assert delivery.attempt(notification.id, later) == delivery.Outcome.SENT

    @pytest.mark.postgres
    @pytest.mark.django_db(transaction=True)
    def test_two_evaluators_at_once_take_turns_and_send_one_alert(
        self, photos, channels, receiver, mailoutbox, monkeypatch
    ):
        # Two evaluators of one pair (beat's, and the one after a run) used to read the
        # facts and the latest change side by side, so the one that computed first could
        # record last; now each holds the pair's lock from before it reads the facts.
        if connection.vendor != "postgresql":
            pytest.skip("needs PostgreSQL (DATABASE_URL): two connections writing at once")
        reconciled(photos, "out_of_sync", missing=1)
        real_facts = evaluate.pair_health
        inside, most = [], []

        def facts_slowly(pairs, now):
            inside.append(1)
            most.append(len(inside))
            time.sleep(0.3)  # room for the other evaluator to come in, if it could
            try:
                return real_facts(pairs, now)
            finally:
                inside.pop()

        monkeypatch.setattr(evaluate, "pair_health", facts_slowly)
        errors = []

        def evaluator():
            try:
                evaluate_health()  # called in this thread, as a worker process would run it
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=evaluator) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert max(most) == 1  # never both at once
        assert HealthChange.objects.count() == 1
        assert Notification.objects.count() == 3
        assert len(mailoutbox) == 1
        deadline = time.monotonic() + 5
        while len(receiver.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.posts("/hook")) == 1


def test_an_evaluation_costs_the_same_queries_for_3_pairs_as_for_12():
    from django.test.utils import CaptureQueriesContext

    AlertChannel.objects.create(name="ops", kind="email", target="o@example.com", all_pairs=True)

    def steady_state_queries(new_pairs: int) -> int:
        for _ in range(new_pairs):
            reconciled(make_pair(), "in_sync")
        evaluate.evaluate()  # records each new pair's first state
        with CaptureQueriesContext(connection) as queries:
            evaluate.evaluate()
        return len(queries)

    assert steady_state_queries(3) == steady_state_queries(9)  # 3, then 12 pairs


def test_beat_evaluates_every_minute_and_its_evaluation_alerts_without_any_reconcile(
    settings, mailoutbox
):
    # Copy failures alone, reported by the Lambda, turn a pair critical: beat's evaluation,
    # not a reconcile, must be what records it and sends the alert.
    from celery import current_app
    from django.conf import settings as django_settings

    entry = django_settings.CELERY_BEAT_SCHEDULE["evaluate-health"]
    assert entry["schedule"] == 60.0 and entry["options"]["expires"] < 60
    pair = make_pair(name="photos", grace_seconds=60)
    AlertChannel.objects.create(name="ops", kind="email", target="o@example.com", all_pairs=True)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    record_events(pair, {"status": "failed", "event_time": an_hour_ago, "finished_at": an_hour_ago})
    assert not ReconcileRun.objects.exists()

    current_app.tasks[entry["task"]].delay().get()

    change = HealthChange.objects.get(pair=pair)
    assert change.to_state == "critical"
    (alert,) = mailoutbox
    assert alert.subject.startswith("[backupsite] CRITICAL: photos: 1 object lacking, behind by")

"""When a change of health sends a message, and when reminders are due (pure rules)."""

from datetime import UTC, datetime, timedelta

import pytest

from replication.alerts.rules import Kind, message_for_change, reminder_due, retry_delay
from replication.status.health import State

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("previous", "current", "kind"),
    [
        (State.OK, State.CRITICAL, Kind.ALERT),
        (State.OK, State.WARNING, Kind.ALERT),
        (State.WARNING, State.CRITICAL, Kind.ALERT),
        (State.CRITICAL, State.WARNING, Kind.ALERT),
        (State.UNKNOWN, State.CRITICAL, Kind.ALERT),
        (State.PAUSED, State.CRITICAL, Kind.ALERT),
        (State.CRITICAL, State.OK, Kind.RESOLVED),
        (State.WARNING, State.OK, Kind.RESOLVED),
        (State.UNKNOWN, State.OK, None),
        (State.PAUSED, State.OK, None),
        (State.CRITICAL, State.PAUSED, None),
        (State.OK, State.UNKNOWN, None),
        (State.CRITICAL, State.CRITICAL, None),
    ],
)
def test_message_for_a_change_of_state(previous, current, kind):
    assert message_for_change(previous, current) == kind


@pytest.mark.parametrize(
    ("current", "kind"),
    [
        (State.CRITICAL, Kind.ALERT),
        (State.WARNING, Kind.ALERT),
        (State.OK, None),
        (State.UNKNOWN, None),
        (State.PAUSED, None),
    ],
)
def test_a_first_evaluation_alerts_only_on_a_problem(current, kind):
    assert message_for_change(None, current) == kind


def test_no_reminder_before_a_whole_interval_has_passed():
    assert reminder_due(State.CRITICAL, T0, T0 + HOUR - timedelta(seconds=1), HOUR) == 0


def test_reminders_are_numbered_by_whole_intervals_since_the_change():
    assert reminder_due(State.CRITICAL, T0, T0 + HOUR, HOUR) == 1
    assert reminder_due(State.CRITICAL, T0, T0 + 3 * HOUR + timedelta(minutes=5), HOUR) == 3


def test_only_critical_pairs_are_reminded_of():
    assert reminder_due(State.WARNING, T0, T0 + 5 * HOUR, HOUR) == 0
    assert reminder_due(State.OK, T0, T0 + 5 * HOUR, HOUR) == 0


def test_a_zero_interval_disables_reminders():
    assert reminder_due(State.CRITICAL, T0, T0 + 5 * HOUR, timedelta(0)) == 0
    assert reminder_due(State.CRITICAL, T0, T0 + 5 * HOUR, None) == 0


def test_retry_delay_doubles_up_to_its_cap():
    delays = [retry_delay(n, base=30, maximum=600).total_seconds() for n in range(1, 7)]
    assert delays == [30, 60, 120, 240, 480, 600]


def test_the_stored_states_are_the_health_functions_states():
    from replication.models import HealthState

    assert set(HealthState.values) == {s.value for s in State}

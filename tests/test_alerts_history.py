"""A pair's health timeline: the function the pair page calls, and the partial it renders."""

from datetime import UTC, datetime, timedelta

import pytest
from django.template.loader import render_to_string

from replication.alerts.history import recent_changes
from replication.models import HealthChange
from tests.factories import make_pair

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
STATES = ["ok", "critical", "ok", "warning", "ok"]


def timeline(pair, states=STATES):
    previous = ""
    for n, state in enumerate(states, start=1):
        HealthChange.objects.create(
            pair=pair,
            sequence=n,
            from_state=previous,
            to_state=state,
            reason=f"reason {n}",
            at=T0 + timedelta(minutes=n),
        )
        previous = state


def test_recent_changes_are_the_pairs_own_newest_first():
    pair, other = make_pair(), make_pair()
    timeline(pair)
    timeline(other, ["critical"])
    changes = recent_changes(pair)
    assert [c.sequence for c in changes] == [5, 4, 3, 2, 1]
    assert {c.pair_id for c in changes} == {pair.pk}


def test_recent_changes_stop_at_the_limit():
    pair = make_pair()
    timeline(pair)
    assert [c.sequence for c in recent_changes(pair, limit=2)] == [5, 4]


def test_the_timeline_partial_shows_each_change_with_its_utc_time():
    pair = make_pair()
    timeline(pair, ["ok", "critical"])
    html = render_to_string(
        "dashboard/_health_timeline.html", {"health_changes": recent_changes(pair)}
    )
    assert html.index("reason 2") < html.index("reason 1")
    assert '<time datetime="2026-11-28T03:02:00Z" title="2026-11-28 03:02:00 UTC"' in html
    assert 'state-ok">OK</span> &rarr; <span class="badge state-critical">CRITICAL' in html
    assert "first seen" in html


def test_the_timeline_partial_says_when_nothing_is_recorded():
    html = render_to_string("dashboard/_health_timeline.html", {"health_changes": []})
    assert "No health recorded yet" in html
    assert "within a minute" in html


def test_the_timeline_partial_says_so_when_no_evaluator_runs():
    # It used to say "every pair is evaluated each minute" even when nothing evaluated it.
    html = render_to_string(
        "dashboard/_health_timeline.html", {"health_changes": [], "never_evaluated": True}
    )
    assert "each minute" not in html
    assert "is not running, so no alert is sent" in html


def test_the_database_refuses_a_change_that_changes_nothing():
    from django.db import IntegrityError

    pair = make_pair()
    timeline(pair, ["ok"])
    with pytest.raises(IntegrityError):
        HealthChange.objects.create(pair=pair, sequence=2, from_state="ok", to_state="ok")

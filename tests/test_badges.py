"""Status badges: one SVG per pair at an unguessable URL, no login, each state in colour."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.template.loader import render_to_string
from django.utils import timezone

from replication.models import BucketPair, ReconcileRun
from replication.monitoring.badges import COLOURS, MAX_REASON, badge, truncate
from replication.status.health import State
from tests.factories import make_pair, record_events

pytestmark = pytest.mark.django_db


def url(pair: BucketPair) -> str:
    return f"/badge/{pair.badge_token}.svg"


def ok_pair():
    pair = make_pair(name="fine")
    now = timezone.now()
    record_events(
        pair, {"status": "copied", "event_time": now - timedelta(seconds=2), "finished_at": now}
    )
    ReconcileRun.objects.create(
        pair=pair, status="succeeded", verdict="in_sync", finished_at=timezone.now()
    )
    return pair


def warning_pair():
    pair = make_pair(name="wobbly", grace_seconds=3600)
    now = timezone.now()
    record_events(pair, {"status": "failed", "event_time": now, "finished_at": now})
    return pair


def critical_pair():
    pair = make_pair(name="broken", grace_seconds=60)
    then = timezone.now() - timedelta(hours=2)
    record_events(pair, {"status": "failed", "event_time": then, "finished_at": then})
    return pair


@pytest.mark.parametrize(
    ("make", "state", "words"),
    [
        (ok_pair, State.OK, "in sync at reconcile"),
        (warning_pair, State.WARNING, "1 object lacking, behind by "),
        (critical_pair, State.CRITICAL, "1 object lacking, behind by 2 h: 1 failed copy…"),
        (lambda: make_pair(name="fresh"), State.UNKNOWN, "no copy reported"),
        (lambda: make_pair(name="resting", enabled=False), State.PAUSED, "paused"),
    ],
)
def test_each_state_has_its_badge_with_colour_and_reason(client, make, state, words):
    pair = make()
    response = client.get(url(pair))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    body = response.content.decode()
    assert body.startswith("<svg")
    assert f'fill="{COLOURS[state]}"' in body
    assert f">{pair.name}</text>" in body
    assert f">{state.value}: " in body
    assert words in body
    assert "max-age=60" in response["Cache-Control"]


def test_an_unknown_token_is_404(client, pair):
    assert client.get("/badge/not-a-token.svg").status_code == 404


def test_tokens_are_long_random_and_distinct(pair):
    other = make_pair()
    assert len(pair.badge_token) >= 32
    assert pair.badge_token != other.badge_token


def test_a_regenerated_token_retires_the_old_url(client, pair):
    old = url(pair)
    pair.regenerate_badge_token()
    assert client.get(old).status_code == 404
    assert client.get(url(pair)).status_code == 200


def test_regenerating_in_the_admin_needs_the_change_permission(client, pair):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_bucketpair"))
    client.force_login(viewer)
    changelist = "/admin/replication/bucketpair/"
    action = {"action": "regenerate_badge_token", "_selected_action": [pair.pk]}
    old = pair.badge_token
    client.post(changelist, action)
    pair.refresh_from_db()
    assert pair.badge_token == old

    viewer.user_permissions.add(Permission.objects.get(codename="change_bucketpair"))
    client.post(changelist, action)
    pair.refresh_from_db()
    assert pair.badge_token != old


def test_badge_text_is_escaped():
    drawn = badge("x", State.CRITICAL, 'a <script> & "quote"')
    svg = render_to_string("badges/pair.svg", {"badge": drawn, "message_half": 10})
    assert "<script>" not in svg
    assert "&lt;script&gt; &amp; &quot;quote&quot;" in svg


def test_long_reasons_are_cut_at_a_word_with_an_ellipsis():
    reason = "3 copies failing, the oldest since 2026-11-27 14:02 UTC (longer than the 15 min)"
    cut = truncate(reason)
    assert len(cut) <= MAX_REASON
    assert cut.endswith("…")
    assert reason.startswith(cut[:-1])
    assert truncate("short reason") == "short reason"


def test_a_wider_message_makes_a_wider_badge():
    short, long = badge("p", State.OK, "ok"), badge("p", State.OK, "in sync at reconcile #12")
    assert long.width > short.width
    assert long.label_width == short.label_width

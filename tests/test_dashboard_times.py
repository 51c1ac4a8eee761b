"""One time convention: pages show UTC times as <time> elements that the browser shows in the
viewer's zone, UTC on hover; health reasons included."""

from datetime import UTC, datetime

from django.template import Context, Template

from replication.templatetags.dashboard import localtimes, utctime

WRITTEN = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)


def test_utctime_is_a_time_element_with_utc_on_hover():
    html = utctime(datetime(2026, 11, 27, 14, 2, 5, tzinfo=UTC))
    assert html == (
        '<time datetime="2026-11-27T14:02:05Z" title="2026-11-27 14:02:05 UTC" '
        'data-style="datetime">2026-11-27 14:02 UTC</time>'
    )


def test_a_time_in_a_reason_becomes_a_time_element_of_the_day_it_was_written():
    html = localtimes("3 objects missing since 14:02 UTC", WRITTEN)
    assert html == (
        '3 objects missing since <time datetime="2026-11-27T14:02:00Z" '
        'title="2026-11-27 14:02:00 UTC" data-style="short">14:02 UTC</time>'
    )


def test_a_dated_time_in_a_reason_keeps_its_date():
    html = localtimes("last reconcile 2026-11-20 09:15 UTC, overdue by 2 h", WRITTEN)
    assert '<time datetime="2026-11-20T09:15:00Z"' in html
    assert ">2026-11-20 09:15 UTC</time>, overdue by 2 h" in html


def test_a_time_later_than_the_writing_is_of_the_day_before():
    """Written at 00:00:30 about 23:50: that was yesterday's 23:50."""
    html = localtimes("failing since 23:50 UTC", datetime(2026, 11, 28, 0, 0, 30, tzinfo=UTC))
    assert 'datetime="2026-11-27T23:50:00Z"' in html


def test_a_reason_is_escaped_around_its_times():
    html = localtimes("<b>key</b> failing since 14:02 UTC & more", WRITTEN)
    assert html.startswith("&lt;b&gt;key&lt;/b&gt; failing since <time ")
    assert html.endswith("</time> &amp; more")


def test_what_only_looks_like_a_time_stays_text():
    for text in ("p95 lag 22 min > 15 min", "key 2026-02-30 10:00 UTC.txt", "25:99 UTC", ""):
        assert "<time" not in localtimes(text, WRITTEN)


def test_reasons_on_pages_go_through_the_filter():
    template = Template("{% load dashboard %}{{ reason|localtimes:at }}")
    html = template.render(Context({"reason": "OK since 14:02 UTC", "at": WRITTEN}))
    assert 'title="2026-11-27 14:02:00 UTC"' in html


def test_utctime_in_the_hour_style_shows_the_hour_alone_and_the_date_on_hover():
    html = utctime(datetime(2026, 11, 27, 14, 0, tzinfo=UTC), "hour")
    assert html == (
        '<time datetime="2026-11-27T14:00:00Z" title="2026-11-27 14:00:00 UTC" '
        'data-style="hour">14:00 UTC</time>'
    )

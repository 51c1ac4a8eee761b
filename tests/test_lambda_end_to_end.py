"""End to end: the handler copies in moto S3 and reports to the real ingest endpoint."""

import pytest

from replication.lambda_function import ReplicationFailed
from replication.models import CopyEvent, ObjectState
from tests.lambda_support import (
    answer_with_error,
    backup_keys,
    invoke,
    put_event,
    s3_event,
)

pytestmark = pytest.mark.s3_backends


def test_handler_report_is_stored_by_the_live_ingest_endpoint(
    transactional_db, live_server, pair, ingest_key, s3, monkeypatch
):
    event = s3_event(
        *put_event(s3, "albums/2026/a b+c.jpg", b"jpeg")["Records"],
        *put_event(s3, "albums/2026/d.jpg", b"jpeg 2")["Records"],
    )

    result = invoke(
        monkeypatch,
        s3,
        event,
        DESTINATION_BUCKET=pair.backup_bucket,
        REPORT_URL=f"{live_server.url}/api/v1/events",
        REPORT_KEY_ID=ingest_key.key_id,
        REPORT_SECRET=ingest_key.secret,
    )

    assert result["copied"] == 2
    assert backup_keys(s3) == ["albums/2026/a b+c.jpg", "albums/2026/d.jpg"]
    stored = CopyEvent.objects.filter(pair=pair).order_by("key")
    assert [(e.key, e.status, e.size) for e in stored] == [
        ("albums/2026/a b+c.jpg", "copied", 4),
        ("albums/2026/d.jpg", "copied", 6),
    ]
    assert ObjectState.objects.filter(pair=pair, status="copied").count() == 2


def test_failed_copy_is_stored_as_failed_before_the_handler_raises(
    transactional_db, live_server, pair, ingest_key, s3, monkeypatch
):
    event = put_event(s3, "private.txt")
    answer_with_error(s3, "CopyObject", status=403, code="AccessDenied")

    with pytest.raises(ReplicationFailed):
        invoke(
            monkeypatch,
            s3,
            event,
            DESTINATION_BUCKET=pair.backup_bucket,
            REPORT_URL=f"{live_server.url}/api/v1/events",
            REPORT_KEY_ID=ingest_key.key_id,
            REPORT_SECRET=ingest_key.secret,
        )

    (stored,) = CopyEvent.objects.filter(pair=pair)
    assert (stored.key, stored.status, stored.error_code) == (
        "private.txt",
        "failed",
        "AccessDenied",
    )

"""docs/alerts.md's verification snippet works on what the webhook channel sends."""

import re
import time

from replication.ingest.signing import sign
from tests.conftest import ROOT


def snippet_is_authentic():
    doc = (ROOT / "docs" / "alerts.md").read_text()
    code = re.search(r"<!-- verify-snippet.*?-->\n```python\n(.*?)```", doc, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 (our own documentation)
    return namespace["is_authentic"]


def test_the_documented_check_accepts_a_signed_body_and_refuses_a_changed_one():
    is_authentic = snippet_is_authentic()
    body, timestamp = b'{"event":"alert","pair":"photos"}', str(int(time.time()))
    signature = sign("s3cret", timestamp, body)
    assert is_authentic("s3cret", timestamp, signature, body)
    assert not is_authentic("s3cret", timestamp, signature, body.replace(b"photos", b"x"))
    assert not is_authentic("other", timestamp, signature, body)


def test_the_documented_check_refuses_a_stale_timestamp():
    is_authentic = snippet_is_authentic()
    body, stale = b"{}", str(int(time.time()) - 600)
    assert not is_authentic("s3cret", stale, sign("s3cret", stale, body), body)

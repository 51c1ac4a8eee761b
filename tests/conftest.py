import os

import pytest

from tests.factories import make_ingest_key, make_pair


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch, settings):
    """No test may reach AWS: fake credentials, no embedded server, fresh clients."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings.EMBEDDED_S3 = False
    from replication import s3

    s3.reset_clients()
    yield
    s3.reset_clients()


@pytest.fixture
def pair(db):
    return make_pair(name="photos", source_bucket="photos-src", backup_bucket="photos-bak")


@pytest.fixture
def ingest_key(db):
    return make_ingest_key(name="lambda")


def redis_url_or_skip() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set: this test needs a real Redis broker (CI sets it)")
    return url

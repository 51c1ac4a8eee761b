import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests import s3_backends
from tests.factories import make_ingest_key, make_pair

pytest_plugins = ["tests.ci_plugin"]


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch, settings):
    """No test may reach AWS: fake credentials, no embedded server, fresh clients."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"):
        # Set, then delete: monkeypatch then also removes what the test itself sets (the
        # demo seeder points the Lambda's client at its S3 through AWS_ENDPOINT_URL).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings.EMBEDDED_S3 = False
    from replication import s3

    s3.reset_clients()
    yield
    s3.reset_clients()


@pytest.fixture(autouse=True)
def _lambda_reads_the_guard_afresh():
    """The handler caches the guard's holds per container (process) for 15 s: not per test."""
    from replication import lambda_function

    lambda_function._holds = None
    lambda_function._lookup_failures = 0
    yield
    lambda_function._holds = None
    lambda_function._lookup_failures = 0


@pytest.fixture(autouse=True)
def _ranges_stay_in_the_test_process(settings):
    """A forked range process would write to its own copy of moto's buckets and of a test's
    counters: the tests that fork say so (RECONCILE_INLINE_PROCESSES = 2)."""
    settings.RECONCILE_INLINE_PROCESSES = 1


@pytest.fixture
def pair(db):
    return make_pair(name="photos", source_bucket="photos-src", backup_bucket="photos-bak")


@pytest.fixture
def ingest_key(db):
    return make_ingest_key(name="lambda")


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _celery_runs_tasks_in_process():
    """Tasks run eagerly in tests, even where REDIS_URL is set (CI).

    Tests that need a real broker and worker use the ``celery_worker`` fixture, and send
    their tasks to its queue with ``send_task`` or ``apply_async(queue=...)``.
    """
    from backupsite.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture
def celery_worker(request):
    """A real ``celery worker`` process on Redis, consuming a queue of its own.

    Yields the queue name. Extra environment for the worker (DATABASE_URL, AWS_ENDPOINT_URL)
    can be given with ``@pytest.mark.parametrize("celery_worker", [{...}], indirect=True)``.
    """
    from backupsite.celery import app

    redis_url = redis_url_or_skip()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    extra_env = getattr(request, "param", None) or {}
    env = {**os.environ, "REDIS_URL": redis_url, **extra_env}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "backupsite",
            "worker",
            "--pool",
            "solo",
            "--queues",
            queue,
            "--hostname",
            f"{queue}@%h",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
    )
    app.conf.task_always_eager = False
    try:
        yield queue
    finally:
        app.conf.task_always_eager = True
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def pytest_generate_tests(metafunc):
    """A test marked ``s3_backends`` that uses S3 runs once against each backend."""
    if "s3_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "s3_backends"
    ):
        metafunc.parametrize("s3_backend", s3_backends.BACKENDS, indirect=True)


@pytest.fixture
def s3_backend(request):
    """The S3 implementation of this test: moto, unless the test is marked ``s3_backends``
    (tests/s3_backends.py), which runs it against moto and LocalStack."""
    return getattr(request, "param", "moto")


@pytest.fixture(scope="session")
def localstack(tmp_path_factory):
    """LocalStack's S3, started at its first use in the session, stopped at the end."""
    python = s3_backends.localstack_python()
    if python is None:
        pytest.skip(s3_backends.NOT_INSTALLED)
    server = s3_backends.LocalStack(python, tmp_path_factory.mktemp("localstack"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_server(request, s3_backend, monkeypatch):
    """An S3 with no buckets that every client made during the test reaches (the backend's
    name is ``s3_backend``)."""
    with s3_backends.serving(request, s3_backend, monkeypatch):
        yield s3_backend


@pytest.fixture
def s3(request, s3_server):
    """An S3 holding the test module's SOURCE and BACKUP buckets (photos-src and photos-bak,
    the ``pair`` fixture's, when the module names none), reached through the client the
    Lambda handler itself uses: moto, or each backend for tests marked ``s3_backends``."""
    from replication import lambda_function

    buckets = (
        getattr(request.module, "SOURCE", "photos-src"),
        getattr(request.module, "BACKUP", "photos-bak"),
    )
    client = lambda_function.make_s3_client()
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return client


def redis_url_or_skip() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set: this test needs a real Redis broker (CI sets it)")
    return url


@pytest.fixture
def moto_server():
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def fill():
    """Put objects straight into the moto backend the server serves (HTTP PUTs are slow)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def fill(bucket: str, objects: dict[str, bytes]) -> None:
        backend.create_bucket(bucket, "us-east-1")
        for key, body in objects.items():
            backend.put_object(bucket, key, body)

    return fill


@pytest.fixture
def local_s3(settings, monkeypatch):
    """A local S3 server on a free port, as `make run` starts it, and the settings using it.

    In a test the server shares this process's moto backend: it is emptied before and after.
    Shared by the demo's tests and the browser test of the demo.
    """
    import threading

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from replication import s3 as s3_clients

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.reset()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    server = s3_clients.make_local_s3_server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.EMBEDDED_S3 = True
    settings.EMBEDDED_S3_PORT = server.server_port
    monkeypatch.setattr(s3_clients, "_embedded_endpoint", None)
    s3_clients.reset_clients()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    backend.reset()

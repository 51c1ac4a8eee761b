"""The two S3 implementations the S3 tests run against (no tests here).

moto runs inside the test process and is the S3 of every test. LocalStack's own S3 provider
(not moto: written against AWS's behaviour) runs as a separate process on a loopback port,
once per test session, for the tests marked ``s3_backends``: the Lambda's copies and deletes
and reconcile's listing, diff and repair. It enforces what moto lets through
(``CopySourceIfMatch`` on CopyObject and UploadPartCopy, a wrong ``ChecksumSHA256`` or
``Content-MD5``), so where the two differ a test asserts what S3 does and says which backend
differs (``differs_from_s3``).

LocalStack lives in a virtual environment of its own, .venv-localstack (``make localstack``;
its pins clash with the project's), or wherever LOCALSTACK_PYTHON points. Without it the
LocalStack half of those tests skips with the command to install it; with CI=true that skip
is a failure, as for every other service.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("moto", "localstack")
NOT_INSTALLED = (
    "LocalStack is not installed: `make localstack` makes .venv-localstack "
    "(or set LOCALSTACK_PYTHON to a Python that has requirements-localstack.txt)"
)
# Seconds to wait for "s3": "running"; it takes 1.5-4 s once its files are compiled, up to
# 20 s on the first start after an install.
START_TIMEOUT = 90


def localstack_python() -> Path | None:
    configured = os.environ.get("LOCALSTACK_PYTHON")
    python = Path(configured) if configured else ROOT / ".venv-localstack" / "bin" / "python"
    return python if python.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalStackError(RuntimeError):
    pass


class LocalStack:
    """One LocalStack process serving only S3 on 127.0.0.1, its files all under ``folder``."""

    def __init__(self, python: Path, folder: Path):
        self.python = python
        self.folder = folder
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = folder / "localstack.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """Only what LocalStack needs: nothing of the test's AWS, database or CI settings."""
        home = self.folder / "home"
        tmp = self.folder / "tmp"
        for path in (home, tmp):
            path.mkdir(exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "TMPDIR": str(tmp),
            # The machines look like containers to LocalStack: without this it writes to
            # /var/lib/localstack and /etc.
            "OVERRIDE_IN_DOCKER": "0",
            # No DNS server of its own (it would bind port 53 and may rewrite resolv.conf).
            "DNS_ADDRESS": "0",
            "SERVICES": "s3",
            "EAGER_SERVICE_LOADING": "1",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            # Its default server (twisted) listens on every interface whatever GATEWAY_LISTEN
            # says; hypercorn binds the address given.
            "GATEWAY_SERVER": "hypercorn",
            # No certificate download and no analytics events: nothing leaves loopback.
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "FILESYSTEM_ROOT": str(self.folder / "filesystem"),
            # Read by tests/localstack_main.py: object data of this instance only.
            "S3_STORAGE_DIR": str(self.folder / "s3-storage"),
        }

    def start(self) -> None:
        # A free port can be taken between the probe and LocalStack's bind: try another.
        for _ in range(3):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [str(self.python), str(ROOT / "tests" / "localstack_main.py")],
                    cwd=self.folder,
                    env=self.environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_until_ready():
                return
            self.stop()
        raise LocalStackError(f"LocalStack did not start; its log:\n{self.log_tail()}")

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            health = f"{self.url}/_localstack/health"
            try:
                with urllib.request.urlopen(health, timeout=2) as answer:  # noqa: S310 (http)
                    if json.load(answer).get("services", {}).get("s3") == "running":
                        return True
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        # The whole process group (it was started in a session of its own), so nothing it
        # started outlives it; its data dies with it, so a long shutdown (10-20 s) is cut.
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait()
        self.process = None
        shutil.rmtree(self.folder / "s3-storage", ignore_errors=True)

    def _signal_group(self, signum: int) -> None:
        # Gone already (with everything it started) is fine.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def remove_every_bucket(self) -> None:
        """Back to an empty S3: every version, delete marker, upload and bucket goes."""
        s3 = self.client()
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
                for upload in page.get("Uploads", []):
                    s3.abort_multipart_upload(
                        Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
                doomed = [
                    {"Key": item["Key"], "VersionId": item["VersionId"]}
                    for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
                ]
                if doomed:
                    s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
            s3.delete_bucket(Bucket=name)


_serving: list[str] = []


def serving_its_own_clock() -> bool:
    """True inside ``serving`` a LocalStack: its objects' LastModified comes from the machine's
    clock, which time_machine cannot move (moto's comes from the test process's)."""
    return bool(_serving) and _serving[-1] == "localstack"


@contextmanager
def serving(request, backend: str, monkeypatch):
    """Inside, every S3 client the project makes (the Lambda's, the site's) reaches ``backend``,
    which starts with no buckets; ``backend`` is "moto" or "localstack"."""
    from replication import s3 as s3_clients

    if backend == "moto":
        from moto import mock_aws

        with mock_aws():
            _serving.append(backend)
            try:
                yield
            finally:
                _serving.pop()
        return
    if backend != "localstack":
        raise ValueError(f"unknown S3 backend {backend!r}: one of {', '.join(BACKENDS)}")
    server = request.getfixturevalue("localstack")
    # boto3 reads AWS_ENDPOINT_URL for every client; the site's clients through replication.s3.
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    s3_clients.reset_clients()
    server.remove_every_bucket()
    _serving.append(backend)
    try:
        yield
    finally:
        _serving.pop()
        server.remove_every_bucket()
        s3_clients.reset_clients()


def differs_from_s3(request, backend: str, how: str) -> None:
    """This test asserts what S3 does and ``backend`` does not: an expected failure there.

    Strict, so the day the backend behaves like S3 the test says so.
    """
    if request.getfixturevalue("s3_backend") == backend:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{backend} {how}"))

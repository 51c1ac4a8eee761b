"""The local processes of `make run` and `make demo`: one moto S3, one web server.

Children run in their own session, so Ctrl-C reaches only the command that started them,
which then stops them in order; nothing is left holding a port.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings

from replication import s3

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


class StackError(RuntimeError):
    """A local process could not start; the message says which and why."""


class Stack:
    def __init__(self, log_file: Path | None = None) -> None:
        self.processes: list[tuple[str, subprocess.Popen]] = []
        # Where the children write, when not to the terminal (the demo keeps it quiet).
        self.log_file = log_file

    def __enter__(self) -> "Stack":
        # Ctrl-C, a closed terminal or a plain `kill` all stop the children too: they run in
        # sessions of their own and would otherwise outlive this process. (SIGINT is set
        # explicitly because a shell starting us in the background leaves it ignored.)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupt)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _popen(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        if self.log_file is None:
            return subprocess.Popen(args, env=env, start_new_session=True)  # noqa: S603
        with open(self.log_file, "ab") as log:  # the child keeps a descriptor of its own
            return subprocess.Popen(  # noqa: S603  (our own interpreter and manage.py)
                args, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
            )

    def child_env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **extra}
        env["EMBEDDED_S3"] = "true"
        env["EMBEDDED_S3_PORT"] = str(settings.EMBEDDED_S3_PORT)
        return env

    def start_s3(self) -> bool:
        """Start the local S3 on EMBEDDED_S3_PORT; False if one already answers there."""
        port = settings.EMBEDDED_S3_PORT
        if s3.is_listening(port):
            return False
        process = self._popen([sys.executable, MANAGE, "local_s3", "--quiet"], self.child_env())
        self.processes.append(("local S3", process))
        self._wait(lambda: s3.is_listening(port), "local S3", process, f"port {port}")
        return True

    def start_web(self, port: int, *, reload: bool = False, quiet: bool = False):
        if s3.is_listening(port):
            raise StackError(
                f"port {port} is already in use: stop what holds it, or choose another "
                f"with PORT=... (make) or --port"
            )
        site = f"http://127.0.0.1:{port}"
        # The alerts this process sends (its local scheduler's) link to the site it serves.
        settings.SITE_URL = site
        args = [sys.executable, MANAGE, "runserver", f"127.0.0.1:{port}"]
        if not reload:
            args.append("--noreload")
        process = self._popen(
            args,
            self.child_env(SITE_URL=site, **({"LOG_LEVEL": "WARNING"} if quiet else {})),
        )
        self.processes.append(("web server", process))
        url = f"http://127.0.0.1:{port}/healthz"
        self._wait(lambda: _answers(url), "web server", process, url)
        return process

    def _wait(self, ready, name: str, process: subprocess.Popen, where: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                where_logged = f" (its output: {self.log_file})" if self.log_file else ""
                raise StackError(
                    f"the {name} exited with status {process.returncode}{where_logged}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise StackError(f"the {name} did not answer on {where} within 60 s")

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def wait(self) -> None:
        """Until a child exits (or Ctrl-C)."""
        while all(process.poll() is None for _, process in self.processes):
            time.sleep(0.5)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  (our own URL)
            return response.status == 200
    except OSError:
        return False


def bucket_help() -> str:
    """How to create buckets in the local S3, for the commands to print."""
    endpoint = s3.local_endpoint()
    port_env = (
        ""
        if settings.EMBEDDED_S3_PORT == 5055
        else f"EMBEDDED_S3_PORT={settings.EMBEDDED_S3_PORT} "
    )
    return (
        f"Local S3 (moto) at {endpoint}, credentials {s3.LOCAL_ACCESS_KEY_ID} / "
        f"{s3.LOCAL_SECRET_ACCESS_KEY}. Create buckets in it with\n"
        f"    {port_env}.venv/bin/python manage.py create_buckets my-source my-backup\n"
        f"or any S3 client, e.g. AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID="
        f"{s3.LOCAL_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={s3.LOCAL_SECRET_ACCESS_KEY} "
        "aws s3 mb s3://my-source"
    )

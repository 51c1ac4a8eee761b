"""CI=true turns a skip into a failure; elsewhere a skip stays a skip."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NEEDS_REDIS = """
import pytest

def test_needs_redis():
    pytest.skip("REDIS_URL is not set")

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False
"""


def run_pytest(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs_redis.py").write_text(NEEDS_REDIS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.ci_plugin",
            "-p",
            "no:django",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_the_run_when_ci_is_true(tmp_path):
    result = run_pytest(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "CI=true: this test may not skip on CI" in result.stdout
    assert "REDIS_URL is not set" in result.stdout
    assert "1 failed, 1 xfailed" in result.stdout


def test_a_skip_stays_a_skip_outside_ci(tmp_path):
    result = run_pytest(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped, 1 xfailed" in result.stdout

"""With CI=true no test may skip: a missing PostgreSQL, Redis or worker is a failure there.

Locally a test that needs a service skips with its reason; on CI, which provides every
service, the same skip would hide a broken setup behind a green run.
"""

import os

import pytest

_TRUE = {"1", "true", "yes", "on"}


def ci_forbids_skipping() -> bool:
    return os.environ.get("CI", "").strip().lower() in _TRUE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and ci_forbids_skipping():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true: this test may not skip on CI ({reason})"

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from backupsite.env import envbool, envint, envlist, envstr

ROOT = Path(__file__).resolve().parent.parent

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "name": str(settings.DATABASES["default"]["NAME"]),
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "broker": settings.CELERY_BROKER_URL,
    "debug": settings.DEBUG,
    "embedded_s3": settings.EMBEDDED_S3,
}))
"""


def run_python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "backupsite.settings"}
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_work_with_no_environment_at_all():
    result = run_python(PRINT_SETTINGS, {})
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"].endswith("db.sqlite3")
    assert values["eager"] is True
    assert values["broker"] == "memory://localhost/"
    assert values["debug"] is True
    assert values["embedded_s3"] is True


def test_database_url_and_redis_url_switch_to_postgres_and_a_broker():
    env = {
        "DATABASE_URL": "postgres://someone@db.example:5432/backups",
        "REDIS_URL": "redis://cache.example:6379/2",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    }
    values = json.loads(run_python(PRINT_SETTINGS, env).stdout)
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["name"] == "backups"
    assert values["eager"] is False
    assert values["broker"] == "redis://cache.example:6379/2"
    assert values["embedded_s3"] is False


@pytest.mark.parametrize(("visibility", "lock"), [("", 300), ("3", 3)])
def test_a_worker_killed_mid_sweep_holds_the_redelivery_lock_no_longer_than_the_visibility(
    visibility, lock
):
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.CELERY_BROKER_TRANSPORT_OPTIONS))"
    )
    result = run_python(code, {"CELERY_VISIBILITY_TIMEOUT": visibility})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["unacked_mutex_expire"] == lock


def test_production_settings_pass_the_deploy_check():
    env = {
        "BACKUPSITE_ENV": "production",
        "SECRET_KEY": "k" * 20 + "-not-a-real-key-but-long-and-varied-1234567890",
        "ALLOWED_HOSTS": "backups.example.com",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "METRICS_TOKEN": "scrape-me",
        "SITE_URL": "https://backups.example.com",
    }
    result = run_python("", env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


PRINT_HSTS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps([settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS,
                  settings.SECURE_HSTS_PRELOAD]))
"""
PRODUCTION_ENV = {
    "BACKUPSITE_ENV": "production",
    "SECRET_KEY": "k" * 20 + "-not-a-real-key-but-long-and-varied-1234567890",
    "ALLOWED_HOSTS": "backups.example.com",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SITE_URL": "https://backups.example.com",
}


def test_hsts_covers_subdomains_and_preload_only_when_asked():
    result = run_python(PRINT_HSTS, PRODUCTION_ENV)
    assert json.loads(result.stdout) == [31_536_000, False, False], result.stderr
    opted_in = {
        **PRODUCTION_ENV,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "SECURE_HSTS_PRELOAD": "true",
    }
    assert json.loads(run_python(PRINT_HSTS, opted_in).stdout) == [31_536_000, True, True]


def test_production_without_a_broker_fails_the_system_check():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "REDIS_URL"}
    result = run_python("", env, "manage.py", "check", "--deploy")
    assert result.returncode != 0
    assert "replication.E002" in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = run_python(PRINT_SETTINGS, {"BACKUPSITE_ENV": "production"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_envbool_reads_the_usual_spellings_and_refuses_others(monkeypatch):
    monkeypatch.setenv("FLAG", "Yes")
    assert envbool("FLAG", default=False) is True
    monkeypatch.setenv("FLAG", "off")
    assert envbool("FLAG", default=True) is False
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be true or false"):
        envbool("FLAG", default=False)


def test_envint_refuses_words(monkeypatch):
    monkeypatch.setenv("COUNT", "ten")
    with pytest.raises(ImproperlyConfigured, match="COUNT must be a whole number"):
        envint("COUNT", 1)


def test_secrets_can_come_from_files(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret_file))
    assert envstr("SECRET_KEY") == "from-a-file"


def test_envlist_splits_on_commas(monkeypatch):
    monkeypatch.setenv("HOSTS", "a.example, b.example,,")
    assert envlist("HOSTS", []) == ["a.example", "b.example"]


def test_system_checks_refuse_a_production_without_a_broker_and_warn_about_the_rest(settings):
    from django.core.checks import ERROR

    from replication.checks import check_configuration

    settings.PRODUCTION, settings.EMBEDDED_S3, settings.REDIS_URL = True, True, ""
    settings.METRICS_TOKEN = ""
    settings.SITE_URL = "https://backups.example.com"
    problems = {p.id: p.level for p in check_configuration(None)}
    assert set(problems) == {"replication.W001", "replication.E002", "replication.W003"}
    assert problems["replication.E002"] >= ERROR
    settings.EMBEDDED_S3, settings.REDIS_URL = False, "redis://127.0.0.1:6379/0"
    settings.METRICS_TOKEN = "scrape-secret"
    assert check_configuration(None) == []


@pytest.mark.parametrize(
    ("site_url", "ids"),
    [
        ("http://backups.example.com", {"replication.E004"}),
        ("https://localhost:8000", {"replication.E005"}),
        ("http://localhost:8000", {"replication.E004", "replication.E005"}),
        ("https://127.0.0.1", {"replication.E005"}),
        ("https://[::1]:8443", {"replication.E005"}),
        ("https://app.localhost", {"replication.E005"}),
        ("https://backups.example.com", set()),
    ],
)
def test_production_refuses_a_site_url_that_is_not_public_https(settings, site_url, ids):
    from django.core.checks import ERROR

    from replication.checks import check_configuration

    settings.PRODUCTION, settings.EMBEDDED_S3 = True, False
    settings.REDIS_URL, settings.METRICS_TOKEN = "redis://127.0.0.1:6379/0", "scrape-secret"
    settings.SITE_URL = site_url
    problems = check_configuration(None)
    assert {p.id for p in problems} == ids
    assert all(p.level >= ERROR for p in problems)


def test_development_may_use_a_local_http_site_url(settings):
    from replication.checks import check_configuration

    settings.PRODUCTION, settings.SITE_URL = False, "http://localhost:8000"
    assert check_configuration(None) == []


def test_production_with_the_default_site_url_fails_the_deploy_check():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SITE_URL"}
    result = run_python("", {**env, "METRICS_TOKEN": "m"}, "manage.py", "check", "--deploy")
    assert result.returncode != 0
    assert "replication.E004" in result.stderr and "replication.E005" in result.stderr

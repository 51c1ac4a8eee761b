"""EMAIL_URL: SMTP settings for alert e-mail from one variable."""

import json
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from backupsite.env import email_settings_from_url
from tests.conftest import ROOT


def test_an_smtp_tls_url_gives_host_port_credentials_and_tls():
    config = email_settings_from_url("smtp+tls://alerts%40example.com:p%40ss@mail.example.com")
    assert config == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "alerts@example.com",
        "EMAIL_HOST_PASSWORD": "p@ss",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
    }


def test_ssl_and_plain_smtp_urls_default_their_ports():
    assert email_settings_from_url("smtp+ssl://mail.example.com")["EMAIL_PORT"] == 465
    plain = email_settings_from_url("smtp://relay:2525")
    assert (plain["EMAIL_PORT"], plain["EMAIL_USE_TLS"], plain["EMAIL_HOST_USER"]) == (
        2525,
        False,
        "",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://mail.example.com", "must start with smtp://"),
        ("smtp://mail.example.com:port", "port that is not a number"),
        ("smtp://", "names no host"),
    ],
)
def test_a_bad_email_url_is_refused_with_the_reason(url, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        email_settings_from_url(url)


PRINT_EMAIL = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps([settings.EMAIL_BACKEND.rsplit(".", 2)[-2], settings.EMAIL_HOST,
                  settings.EMAIL_PORT, settings.EMAIL_USE_TLS, settings.DEFAULT_FROM_EMAIL]))
"""


def email_settings(**env) -> list:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "backupsite.settings"}
    result = subprocess.run(
        [sys.executable, "-c", PRINT_EMAIL],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_development_prints_mail_to_the_console_until_told_where_to_send_it():
    assert email_settings() == ["console", "localhost", 25, False, "backupsite@localhost"]


def test_email_host_or_email_url_configures_smtp():
    assert email_settings(EMAIL_HOST="mail.example.com", DEFAULT_FROM_EMAIL="b@example.com") == [
        "smtp",
        "mail.example.com",
        587,
        True,
        "b@example.com",
    ]
    assert email_settings(EMAIL_URL="smtp+ssl://u:p@mail.example.com")[:3] == [
        "smtp",
        "mail.example.com",
        465,
    ]


def test_production_without_settings_uses_the_local_mail_server():
    env = {"BACKUPSITE_ENV": "production", "SECRET_KEY": "x" * 50}
    assert email_settings(**env)[:3] == ["smtp", "localhost", 25]

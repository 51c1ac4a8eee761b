"""EMAIL_URL: SMTP settings for alert e-mail from one variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from backupsite.env import email_settings_from_url


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

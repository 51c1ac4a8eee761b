"""Settings for backupsite, read from the environment.

Every variable has a default that works on a laptop: a SQLite file, Celery running tasks
in-process when no Redis is configured, and an in-process moto S3 server when no
AWS_ENDPOINT_URL or AWS credentials are given (see replication/s3.py). Set
``BACKUPSITE_ENV=production`` to get the hardened settings that pass ``check --deploy``.
"""

import os
from pathlib import Path

import dj_database_url

from backupsite.env import email_settings_from_url, envbool, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent

PRODUCTION = envstr("BACKUPSITE_ENV", "development") == "production"

# The development key is public by design; production refuses to start without a real one.
SECRET_KEY = envstr("SECRET_KEY", None if PRODUCTION else "dev-only-insecure-key-do-not-deploy")
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be set when BACKUPSITE_ENV=production")

DEBUG = envbool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = envstr("SITE_URL", "http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "replication",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backupsite.urls"
WSGI_APPLICATION = "backupsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default so a fresh checkout runs with nothing installed; PostgreSQL in CI and
# production through DATABASE_URL=postgres://user@host:5432/name.
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The ingest API and the workers write concurrently: wait for the lock, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times in the admin read "2026-11-27 14:02 UTC", then the viewer's zone (backupsite/formats/).
FORMAT_MODULE_PATH = ["backupsite.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LOGIN_URL = "admin:login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # The embedded moto S3 server would log every request it answers.
        "werkzeug": {"level": "WARNING"},
        # runserver's request lines follow LOG_LEVEL too (the demo's web server runs quieter).
        "django.server": {"level": envstr("LOG_LEVEL", "INFO")},
    },
}

DEFAULT_EXCEPTION_REPORTER_FILTER = "backupsite.errors.SecretsHiddenFilter"

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000)
    # Both are opt-in: they bind every subdomain of the site's domain to HTTPS, and a
    # preload-list entry takes months to undo. The deploy check's advice to turn them on is
    # silenced while they are off, since leaving them off is this project's choice.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
    SILENCED_SYSTEM_CHECKS = [
        *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
    ]
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"

# --- S3 -------------------------------------------------------------------------------------
# AWS_ENDPOINT_URL is boto3's own variable; boto3 reads it itself. EMBEDDED_S3 uses the local
# moto server on 127.0.0.1:EMBEDDED_S3_PORT instead of AWS (started by `make run`/`make demo`,
# or in-process by whichever process finds none there); on only when nothing says where S3 is.
_aws_configured = any(
    os.environ.get(v) for v in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")
)
EMBEDDED_S3 = envbool("EMBEDDED_S3", default=not PRODUCTION and not _aws_configured)
EMBEDDED_S3_PORT = envint("EMBEDDED_S3_PORT", 5055)
AWS_REGION = envstr("AWS_DEFAULT_REGION", "us-east-1")
S3_CONNECT_TIMEOUT = envint("S3_CONNECT_TIMEOUT", 5)
S3_READ_TIMEOUT = envint("S3_READ_TIMEOUT", 60)
S3_MAX_ATTEMPTS = envint("S3_MAX_ATTEMPTS", 5)

# --- Celery ---------------------------------------------------------------------------------
# Without REDIS_URL tasks run eagerly in-process, so the demo needs no broker.
REDIS_URL = envstr("REDIS_URL", "")
# The in-memory transport ignores the host; naming one stops kombu warning "No hostname was
# supplied" on every task.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers an unacknowledged task after this long; longer than the longest run.
_VISIBILITY_TIMEOUT = envint("CELERY_VISIBILITY_TIMEOUT", 43_200)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _VISIBILITY_TIMEOUT,
    # Workers look for overdue unacknowledged tasks every this many seconds (kombu's default
    # sweep is about 100 s apart, too slow for a short visibility timeout): one cheap Redis
    # query per worker per sweep.
    "unacked_restore_interval": max(1, min(10, _VISIBILITY_TIMEOUT)),
    "unacked_restore_throttle": 1,
    # The sweep holds a lock in Redis for a few milliseconds; a worker killed while holding it
    # left it for kombu's 5 minutes, and no worker swept until then. Never longer than the
    # visibility timeout (two sweeps at once are safe: each restore is a Redis transaction).
    "unacked_mutex_expire": max(1, min(300, _VISIBILITY_TIMEOUT)),
}
CELERY_RESULT_EXPIRES = 86_400
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {
    # Every minute; "expires" just under it so ticks missed while no worker ran don't pile up.
    "reconcile-due-pairs": {
        "task": "replication.tasks.dispatch_due_reconciles",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "reap-stalled-reconciles": {
        "task": "replication.tasks.reap_stalled_reconciles",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}
# Ingest: per-event rows older than EVENT_RETENTION_DAYS go, in batches; current state stays.
CELERY_BEAT_SCHEDULE["purge-expired-events"] = {
    "task": "replication.tasks.purge_expired_events",
    "schedule": 3600.0,
    "options": {"expires": 3300},
}

# Ingest: closed hours' tallies rolled up into one row per pair and hour, for the overview.
CELERY_BEAT_SCHEDULE["fold-closed-hours"] = {
    "task": "replication.tasks.fold_closed_hours",
    "schedule": 300.0,
    "options": {"expires": 290},
}

# Reconcile: objects found in flight are settled once their grace has passed.
CELERY_BEAT_SCHEDULE["settle-in-flight"] = {
    "task": "replication.tasks.settle_in_flight",
    "schedule": 60.0,
    "options": {"expires": 55},
}

# Runs, their discrepancy rows, health changes, notifications, deleted objects' states.
CELERY_BEAT_SCHEDULE["purge-expired-records"] = {
    "task": "replication.tasks.purge_expired_records",
    "schedule": 3600.0,
    "options": {"expires": 3300},
}

# Alerts: evaluate every pair's health every minute (replication/alerts/).
CELERY_BEAT_SCHEDULE["evaluate-health"] = {
    "task": "replication.alerts.tasks.evaluate_health",
    "schedule": 60.0,
    "options": {"expires": 55},
}

# Protection: every enabled pair's bucket settings, hourly (replication/protection/).
CELERY_BEAT_SCHEDULE["check-protection"] = {
    "task": "replication.protection.tasks.check_all_protection",
    "schedule": 3600.0,
    "options": {"expires": 3300},
}
# The destructive-change guard: trip within a minute of a burst; refresh "the usual" hourly.
CELERY_BEAT_SCHEDULE["evaluate-guards"] = {
    "task": "replication.protection.tasks.evaluate_guards",
    "schedule": 60.0,
    "options": {"expires": 55},
}
CELERY_BEAT_SCHEDULE["recompute-guard-usual"] = {
    "task": "replication.protection.tasks.recompute_guard_usual",
    "schedule": 3600.0,
    "options": {"expires": 3300},
}
# Restores and drills (replication/restore/): take over restores whose worker died, and start
# the restore drills that are due.
CELERY_BEAT_SCHEDULE["reap-stalled-restores"] = {
    "task": "replication.tasks.reap_stalled_restores",
    "schedule": 60.0,
    "options": {"expires": 55},
}
CELERY_BEAT_SCHEDULE["restore-drills-due"] = {
    "task": "replication.tasks.dispatch_due_drills",
    "schedule": 900.0,
    "options": {"expires": 850},
}

# --- E-mail (alert channels) ----------------------------------------------------------------
# EMAIL_URL (smtp://user:password@host:port, smtp+tls://, smtp+ssl://) or the EMAIL_HOST
# family. Without either, development prints mail to the console instead of sending it, and
# production hands it to the local mail server (localhost:25), as Django does by default.
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "backupsite@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
_email_url = envstr("EMAIL_URL", "")
if _email_url:
    _email = email_settings_from_url(_email_url)
else:
    _email_host = envstr("EMAIL_HOST", "")
    _email_ssl = envbool("EMAIL_USE_SSL", False)
    _email = {
        "EMAIL_HOST": _email_host or "localhost",
        "EMAIL_PORT": envint("EMAIL_PORT", (465 if _email_ssl else 587) if _email_host else 25),
        "EMAIL_HOST_USER": envstr("EMAIL_HOST_USER", ""),
        "EMAIL_HOST_PASSWORD": envstr("EMAIL_HOST_PASSWORD", ""),
        "EMAIL_USE_TLS": envbool("EMAIL_USE_TLS", bool(_email_host) and not _email_ssl),
        "EMAIL_USE_SSL": _email_ssl,
        "EMAIL_BACKEND": (
            "django.core.mail.backends.smtp.EmailBackend"
            if _email_host or PRODUCTION
            else "django.core.mail.backends.console.EmailBackend"
        ),
    }
EMAIL_BACKEND = envstr("EMAIL_BACKEND", _email["EMAIL_BACKEND"])
EMAIL_HOST = _email["EMAIL_HOST"]
EMAIL_PORT = _email["EMAIL_PORT"]
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]

# --- Product settings -----------------------------------------------------------------------
METRICS_TOKEN = envstr("METRICS_TOKEN", "")
INGEST_MAX_EVENTS = 1000
INGEST_MAX_BODY_BYTES = 1024 * 1024
INGEST_CLOCK_SKEW_SECONDS = 300
EVENT_RETENTION_DAYS = envint("EVENT_RETENTION_DAYS", 90)
# What reconciles, alerts and protection checks write (replication/retention.py, hourly from
# beat). Run summaries, health changes, notifications and protection check results stay 13
# months (396 days) for the monthly evidence report;
# discrepancy rows and key ranges only RECONCILE_DETAIL_RETENTION_DAYS, except for each
# pair's latest runs. Deleted objects' states go after EVENT_RETENTION_DAYS.
RECONCILE_RUN_RETENTION_DAYS = envint("RECONCILE_RUN_RETENTION_DAYS", 396)
RECONCILE_DETAIL_RETENTION_DAYS = envint("RECONCILE_DETAIL_RETENTION_DAYS", 7)
ALERT_HISTORY_RETENTION_DAYS = envint("ALERT_HISTORY_RETENTION_DAYS", 396)
PROTECTION_RESULT_RETENTION_DAYS = envint("PROTECTION_RESULT_RETENTION_DAYS", 396)
RETENTION_BATCH_SIZE = envint("RETENTION_BATCH_SIZE", 5000)
# Batches per table and hourly run: a backlog is worked off over several runs.
RETENTION_MAX_BATCHES = envint("RETENTION_MAX_BATCHES", 100)
RECONCILE_MAX_DISCREPANCY_ROWS = envint("RECONCILE_MAX_DISCREPANCY_ROWS", 10_000)
# A pair is cut into key ranges of about this many source objects (sampled by its previous
# run), reconciled by as many Celery tasks at once, at most RECONCILE_MAX_RANGES.
RECONCILE_RANGE_SIZE = envint("RECONCILE_RANGE_SIZE", 100_000)
RECONCILE_MAX_RANGES = envint("RECONCILE_MAX_RANGES", 16)
# Ranges reconciled at once by one process (`manage.py reconcile`, a single-range Celery task
# runs one): listing is mostly waiting on S3, so threads overlap it.
RECONCILE_INLINE_RANGES = envint("RECONCILE_INLINE_RANGES", 8)
# Processes those ranges are shared among (forked): parsing is CPU work, threads of one
# process take turns at it. 0: one per core this process may use, at most 4; 1 keeps the
# command in one process.
RECONCILE_INLINE_PROCESSES = envint("RECONCILE_INLINE_PROCESSES", 0)
RECONCILE_REPAIR_THREADS = envint("RECONCILE_REPAIR_THREADS", 8)
# Concurrent HEADs per key range fetching checksums for differences the listing cannot settle.
RECONCILE_CHECKSUM_THREADS = envint("RECONCILE_CHECKSUM_THREADS", 8)
# Progress and heartbeat are saved this often; a running run silent for the timeout lost its
# worker and is failed by the reaper. A queued run no worker took in time is failed too.
RECONCILE_PROGRESS_SECONDS = envint("RECONCILE_PROGRESS_SECONDS", 5)
RECONCILE_HEARTBEAT_TIMEOUT = envint("RECONCILE_HEARTBEAT_TIMEOUT", 300)
RECONCILE_QUEUED_TIMEOUT = envint("RECONCILE_QUEUED_TIMEOUT", 3600)
# Restores: copies at once per job; a job is taken over after the reconcile's heartbeat
# timeout, at most RESTORE_MAX_ATTEMPTS times in all, then failed with the reason.
RESTORE_THREADS = envint("RESTORE_THREADS", 16)
RESTORE_MAX_ATTEMPTS = envint("RESTORE_MAX_ATTEMPTS", 3)
# Restore drills: objects drawn at random (plus the largest multipart one).
DRILL_SAMPLE_SIZE = envint("DRILL_SAMPLE_SIZE", 20)
# Alerts. A reminder every ALERT_REMINDER_MINUTES while a pair stays critical (0: none).
ALERT_REMINDER_MINUTES = envint("ALERT_REMINDER_MINUTES", 60)
ALERT_HTTP_TIMEOUT = envint("ALERT_HTTP_TIMEOUT", 5)
# Webhooks reach public addresses only (replication/alerts/targets.py): loopback, link-local
# (the cloud metadata service) and reserved addresses never, private networks only with
# ALLOW_PRIVATE (on-premises receivers), and any address in ALLOWED_NETWORKS (CIDR, comma
# separated) as an explicit exception.
ALERT_WEBHOOK_ALLOW_PRIVATE = envbool("ALERT_WEBHOOK_ALLOW_PRIVATE", False)
ALERT_WEBHOOK_ALLOWED_NETWORKS = envlist("ALERT_WEBHOOK_ALLOWED_NETWORKS", [])
# A delivery is tried this many times, Celery waiting about BACKOFF, 2*BACKOFF... seconds
# (with jitter, at most BACKOFF_MAX) in between, before it is marked failed.
ALERT_DELIVERY_ATTEMPTS = envint("ALERT_DELIVERY_ATTEMPTS", 5)
ALERT_RETRY_BACKOFF = envint("ALERT_RETRY_BACKOFF", 30)
ALERT_RETRY_BACKOFF_MAX = 600
# The evaluation re-queues deliveries whose retry is this late (its Celery retry was lost).
ALERT_SWEEP_MARGIN = 120
# Flapping damper: once a pair has made ALERT_FLAP_CHANGES changes that send messages within
# ALERT_FLAP_WINDOW_MINUTES, further messages are held and summed up in one, sent when the
# pair has not changed for ALERT_FLAP_SETTLE_MINUTES, or at most once a window (0: off).
ALERT_FLAP_CHANGES = envint("ALERT_FLAP_CHANGES", 3)
ALERT_FLAP_WINDOW_MINUTES = envint("ALERT_FLAP_WINDOW_MINUTES", 60)
ALERT_FLAP_SETTLE_MINUTES = envint("ALERT_FLAP_SETTLE_MINUTES", 15)

"""Django settings, all read from the environment (each variable is listed in README.md).

With no variables set, Sundial runs on its embedded default: SQLite in ``var/`` and a
file-system broker that needs no server.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from executors.aws.budget import DEFAULT_RATES
from jobs.costs import DEFAULT_PRICES
from sundial_site.env import (
    env_bool,
    env_float,
    env_int,
    env_json_object,
    env_list,
    env_str,
    installation_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SUNDIAL_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if env_bool("SUNDIAL_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("SECRET_KEY is not set")
    # The embedded default starts with no configuration at all, yet never with a key
    # anyone could read in this repository: one is made per installation. Several web
    # hosts must share one key, so production sets SECRET_KEY (and
    # SUNDIAL_REQUIRE_SECRET_KEY=1 to stop start-up without it).
    SECRET_KEY = installation_secret(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "jobs.admin_site.SundialAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_htmx",
    "jobs",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "sundial_site.urls"
WSGI_APPLICATION = "sundial_site.wsgi.application"
AUTH_USER_MODEL = "jobs.User"
LOGIN_URL = "admin:login"

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

# ---- database ----
_SQLITE_URL = f"sqlite:///{VAR_DIR / 'sundial.sqlite3'}"
try:
    # Connections are reused across requests and Celery tasks: opening one costs more
    # than a whole hand-off between two tasks (see README, "Where the time goes").
    _db = dj_database_url.parse(
        env_str("DATABASE_URL", _SQLITE_URL) or _SQLITE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file: WAL lets readers run beside the one
    # writer, and IMMEDIATE transactions take the write lock up front, so a writer waits
    # (up to the timeout) instead of failing half-way with "database is locked".
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---- Celery ----
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis re-delivers an unacknowledged message after the visibility timeout; tasks are
    # idempotent, so a repeat is harmless, but it must outlast the longest task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Threads, not prefork, unless a worker is started with another --pool: orchestration waits
# on the database, AWS and child processes, and one process keeps every local task of the
# worker under one supervisor (and stops them all when the worker stops).
CELERY_WORKER_POOL = "threads"
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# ---- Sundial ----
SUNDIAL_API_URL = env_str("SUNDIAL_API_URL", "http://127.0.0.1:8000") or ""
SUNDIAL_LOG_DIR = Path(env_str("SUNDIAL_LOG_DIR", str(VAR_DIR / "logs")) or VAR_DIR / "logs")
# A local process whose heartbeat is older than this is taken as lost (its worker died).
SUNDIAL_HEARTBEAT_INTERVAL_S = env_float("SUNDIAL_HEARTBEAT_INTERVAL_S", 5.0, minimum=0.1)
SUNDIAL_LOST_AFTER_S = env_float("SUNDIAL_LOST_AFTER_S", 60.0, minimum=1.0)
# A submission stuck in "submitting" this long is recovered by the reconciler.
SUNDIAL_SUBMIT_STUCK_AFTER_S = env_float("SUNDIAL_SUBMIT_STUCK_AFTER_S", 60.0, minimum=1.0)
# An orphaned local process on another host that no worker there has stopped this long after
# it was found lost is given up on: its attempt fails (saying so) and the retry proceeds.
SUNDIAL_ORPHAN_UNREACHABLE_AFTER_S = env_float(
    "SUNDIAL_ORPHAN_UNREACHABLE_AFTER_S", 60.0, minimum=1.0
)
# A stopping worker gives its local processes at most this long between SIGTERM and SIGKILL.
SUNDIAL_SHUTDOWN_GRACE_S = env_float("SUNDIAL_SHUTDOWN_GRACE_S", 10.0)
# A cron fire time counts as "on time" when the tick is at most this late.
SUNDIAL_MISFIRE_GRACE_S = env_float("SUNDIAL_MISFIRE_GRACE_S", 60.0, minimum=1.0)

# ---- Notifications ----
# Links in emails, webhooks and Slack messages start here (the address people open).
SUNDIAL_BASE_URL = (env_str("SUNDIAL_BASE_URL", SUNDIAL_API_URL) or "").rstrip("/")
# Critical processes with no PagerDuty subscription of their own page this service.
SUNDIAL_PAGERDUTY_ROUTING_KEY = env_str("SUNDIAL_PAGERDUTY_ROUTING_KEY") or ""
# Where the PagerDuty Events API is (tests point it at a local HTTPS server).
SUNDIAL_PAGERDUTY_EVENTS_URL = env_str("SUNDIAL_PAGERDUTY_EVENTS_URL") or ""
if SUNDIAL_PAGERDUTY_EVENTS_URL and not SUNDIAL_PAGERDUTY_EVENTS_URL.startswith("https://"):
    # The client refuses anything else at every send; say so once, at start-up.
    raise ImproperlyConfigured(
        "SUNDIAL_PAGERDUTY_EVENTS_URL must be an https:// URL,"
        f" not {SUNDIAL_PAGERDUTY_EVENTS_URL!r}"
    )

# How often alerts (missed starts, long runs, deadlines) are looked for: by beat, and by
# each worker too, so a missed start is seen while beat is down.
SUNDIAL_ALERT_SCAN_EVERY_S = env_float("SUNDIAL_ALERT_SCAN_EVERY_S", 30.0, minimum=1.0)
# A delivery is tried at most this many times (with a growing delay) before it is given up.
SUNDIAL_DELIVERY_MAX_ATTEMPTS = env_int("SUNDIAL_DELIVERY_MAX_ATTEMPTS", 10, minimum=1)
# A delivery claimed this long ago by a worker that never finished it is tried again.
SUNDIAL_DELIVERY_STUCK_AFTER_S = env_float("SUNDIAL_DELIVERY_STUCK_AFTER_S", 300.0, minimum=30)
# Email: Django's own settings, from the environment.
EMAIL_HOST = env_str("EMAIL_HOST") or ""
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "sundial@localhost") or "sundial@localhost"
# With no mail server (the embedded default) each message is written to a file in
# $SUNDIAL_VAR_DIR/mail, where it can be read, instead of filling the console.
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = VAR_DIR / "mail"

# ---- AWS (Batch, ECS, CloudWatch Logs) ----
# Credentials come from the default AWS chain; AWS_ENDPOINT_URL points at moto or LocalStack.
# The region tasks run in unless their config names one. AWS_REGION is read here because
# botocore itself reads only AWS_DEFAULT_REGION (and ~/.aws/config), which work too.
SUNDIAL_AWS_REGION = env_str("SUNDIAL_AWS_REGION") or env_str("AWS_REGION")
SUNDIAL_AWS_MAX_ATTEMPTS = env_int("SUNDIAL_AWS_MAX_ATTEMPTS", 5, minimum=1)
# Calls a second each worker process allows itself per service (below AWS's account limits).
SUNDIAL_AWS_RATES = {
    service: env_float(f"SUNDIAL_AWS_RATE_{service.upper()}", rate, minimum=0.1)
    for service, rate in DEFAULT_RATES.items()
}
SUNDIAL_BATCH_JOB_QUEUE = env_str("SUNDIAL_BATCH_JOB_QUEUE")  # for tasks that name none
SUNDIAL_ECS_CLUSTER = env_str("SUNDIAL_ECS_CLUSTER")  # for tasks that name none
# A polled job AWS no longer returns this long after its submit is taken as lost (AWS forgets
# finished jobs after a while; a job that was never seen at all is lost too).
SUNDIAL_REMOTE_LOST_AFTER_S = env_float("SUNDIAL_REMOTE_LOST_AFTER_S", 300.0, minimum=10.0)

# Prices for the cost estimates, USD per hour: {"FARGATE": {"vcpu_hour": ..., "gb_hour": ...,
# "disk_gb_hour": ...}, "EC2": {..., "gpu_hour": ...}}; a platform given replaces the default's.
SUNDIAL_PRICES = {**DEFAULT_PRICES, **env_json_object("SUNDIAL_PRICES")}

if SUNDIAL_HEARTBEAT_INTERVAL_S * 3 > SUNDIAL_LOST_AFTER_S:
    raise ImproperlyConfigured(
        "SUNDIAL_LOST_AFTER_S must be at least three heartbeat intervals "
        f"(3 x SUNDIAL_HEARTBEAT_INTERVAL_S = {SUNDIAL_HEARTBEAT_INTERVAL_S * 3:g}s)"
    )

# ---- the rest of Django ----
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC") or "UTC"
USE_I18N = True
USE_TZ = True
# Dates as "2026-11-24 09:00:00 CET" everywhere (sundial_site/formats/en/formats.py).
FORMAT_MODULE_PATH = ["sundial_site.formats"]
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO") or "INFO"},
    # A line per Celery task (a tick every second) would bury what matters.
    "loggers": {
        **{
            name: {"level": "WARNING"}
            # boto3 says where it found credentials and endpoints on every new client.
            for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat", "botocore")
        },
        # runserver's access log: a line per page, stylesheet and icon. At WARNING it still
        # shows 4xx and 5xx. Its own handler (Django's default) is replaced, so name ours.
        "django.server": {"level": "WARNING", "handlers": ["console"], "propagate": False},
    },
}
# Celery logs through the configuration above instead of replacing it.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

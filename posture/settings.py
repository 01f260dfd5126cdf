"""One settings file, driven by environment variables (see README, "Configuration")."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("POSTURE_VAR_DIR", BASE_DIR / "var"))
# var/ holds the embedded database (sessions, password hashes), keys and reports: this
# user's alone. Files written by Django (reports) are 0600, their directories 0700.
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
if VAR_DIR.stat().st_uid == os.geteuid():
    VAR_DIR.chmod(0o700)
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def env_bool(name: str, default: bool = False) -> bool:
    """A yes/no variable. Anything but a clear yes or no stops start-up: a typo such as
    ``POSTURE_HTTPS=ture`` must not quietly turn a protection off."""
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is neither true nor false (use true/false, yes/no, on/off or 1/0)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def env_secret(name: str, generate: Callable[[], str], filename: str) -> str:
    """``NAME``, else the file named by ``NAME_FILE``, else one generated once into var/.

    Generated secrets are for the embedded default; production sets its own.
    """
    if os.environ.get(name):
        return os.environ[name]
    if os.environ.get(f"{name}_FILE"):
        return Path(os.environ[f"{name}_FILE"]).read_text().strip()
    path = VAR_DIR / filename
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(generate())
    return path.read_text().strip()


SECRET_KEY = env_secret("SECRET_KEY", lambda: secrets.token_urlsafe(50), "secret_key")
# Encrypts stored TLS keys and SSH keys; deliberately not derived from SECRET_KEY.
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotation).
POSTURE_CREDENTIALS_KEYS = env_list("POSTURE_CREDENTIALS_KEY") or env_secret(
    "POSTURE_CREDENTIALS_KEY", lambda: Fernet.generate_key().decode(), "credentials.key"
).split(",")

DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "posture",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "posture.middleware.SecurityHeadersMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into our lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "posture.urls"
WSGI_APPLICATION = "posture.wsgi.application"

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
    }
]

DATABASES = {"default": dj_database_url.config(default=f"sqlite:///{VAR_DIR / 'posture.sqlite3'}", conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    _sqlite = Path(DATABASES["default"]["NAME"])
    if _sqlite.parent.is_dir() and not _sqlite.exists():
        # Created private before SQLite creates it with the process's umask.
        _sqlite.touch(mode=0o600)
    # Web, worker and beat share the file: wait for locks rather than fail.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    # A kept connection is checked before its first use in a task or request: after a
    # database restart the worker reconnects instead of failing one task per process.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "fleet"
LOGOUT_REDIRECT_URL = "login"
# Login throttling (django-axes): failures per (username, client address) before a cool-down.
LOGIN_THROTTLE_ATTEMPTS = env_int("POSTURE_LOGIN_ATTEMPTS", 5)
LOGIN_THROTTLE_SECONDS = env_int("POSTURE_LOGIN_COOLDOWN", 300)
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = LOGIN_THROTTLE_ATTEMPTS
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_THROTTLE_SECONDS)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "posture.views.auth.client_address"
AXES_LOCKOUT_CALLABLE = "posture.views.auth.locked_out"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("TZ_NAME", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

# --- Security headers (manage.py check --deploy clean when DJANGO_DEBUG is off) ---
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
# Behind TLS in production; the embedded default serves plain HTTP on loopback.
SECURE_SSL_REDIRECT = env_bool("POSTURE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("POSTURE_HTTPS", False)
SECURE_HSTS_SECONDS = env_int("POSTURE_HSTS_SECONDS", 31536000 if env_bool("POSTURE_HTTPS", False) else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
# Behind a reverse proxy: trust its X-Forwarded-Proto, and take the client's address from
# the X-Forwarded-For entry that the POSTURE_PROXY_COUNT proxies in front of us appended.
POSTURE_BEHIND_PROXY = env_bool("POSTURE_BEHIND_PROXY", False)
POSTURE_PROXY_COUNT = env_int("POSTURE_PROXY_COUNT", 1)
if POSTURE_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Celery ---
REDIS_URL = os.environ.get("REDIS_URL", "")
POLL_SOFT_TIME_LIMIT = env_int("POSTURE_POLL_SOFT_LIMIT", 120)
POLL_TIME_LIMIT = env_int("POSTURE_POLL_HARD_LIMIT", 150)
# A poll's lease on its host, renewed every third of it while the poll runs: a dead
# worker's host is free again within this many seconds.
POLL_LEASE_SECONDS = env_int("POSTURE_POLL_LEASE", 15)
# A failing host is tried again after POLL_RETRY_BASE seconds (transient failures; the
# interval for permanent ones), doubling with each failure in a row up to the cap (or
# the interval, if longer).
POLL_RETRY_BASE = env_int("POSTURE_POLL_RETRY_BASE", 15)
POLL_BACKOFF_MAX = env_int("POSTURE_POLL_BACKOFF_MAX", 600)
# Task-level retries: a poll waiting for another poll's lease, or for the database.
POLL_MAX_RETRIES = 5
DEFAULT_POLL_INTERVAL = env_int("POSTURE_DEFAULT_INTERVAL", 300)
ENGINE_TIMEOUT = env_float("POSTURE_ENGINE_TIMEOUT", 10.0)
# One overall deadline per poll (every engine call respects it) and per "Test connection"
# (under gunicorn's own timeout), and caps on what an engine may send.
POLL_DEADLINE = env_float("POSTURE_POLL_DEADLINE", 60.0)
PROBE_DEADLINE = env_float("POSTURE_PROBE_DEADLINE", 10.0)
MAX_ANSWER_BYTES = env_int("POSTURE_MAX_ANSWER_BYTES", 16 * 1024 * 1024)
MAX_POLL_BYTES = env_int("POSTURE_MAX_POLL_BYTES", 64 * 1024 * 1024)
if POLL_DEADLINE >= POLL_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"POSTURE_POLL_DEADLINE ({POLL_DEADLINE:g}s) must be shorter than POSTURE_POLL_SOFT_LIMIT ({POLL_SOFT_TIME_LIMIT}s): the deadline ends a slow poll cleanly, the time limit is the backstop"
    )
DISPATCH_EVERY = env_float("POSTURE_DISPATCH_EVERY", 1.0)
DISPATCH_BATCH = env_int("POSTURE_DISPATCH_BATCH", 500)
# The watcher (manage.py watch): a host's lease lasts this long and is renewed every
# quarter of it, so a dead watcher's hosts go to the others within lease + renewal.
WATCH_LEASE = env_float("POSTURE_WATCH_LEASE", 40.0)
# One poll per burst of events: enqueued after this much quiet, or at the latest this
# long after the burst's first event.
WATCH_QUIET = env_float("POSTURE_WATCH_QUIET", 1.0)
WATCH_MAX_DELAY = env_float("POSTURE_WATCH_MAX_DELAY", 5.0)
WATCH_MAX_HOSTS = env_int("POSTURE_WATCH_MAX_HOSTS", 2000)
if not (5 <= WATCH_LEASE <= 600 and 0 < WATCH_QUIET <= WATCH_MAX_DELAY and WATCH_MAX_HOSTS >= 1):
    raise ImproperlyConfigured(
        "POSTURE_WATCH_LEASE must be 5-600 s, POSTURE_WATCH_QUIET above 0 and at most POSTURE_WATCH_MAX_DELAY, POSTURE_WATCH_MAX_HOSTS at least 1"
    )
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Longer than the longest task (a report) plus a retry's delay: Redis must not hand
    # a still-running task to a second worker. Only a worker that died whole leaves its
    # messages to this timeout; its hosts' leases run out in seconds and the dispatcher
    # polls them when next due, so the late re-delivery finds itself redundant.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": max(POLL_TIME_LIMIT, env_int("POSTURE_REPORT_HARD_LIMIT", 660)) + 120,
        # Sockets that notice a dead Redis, so the worker reconnects instead of waiting.
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }
else:
    # The embedded default: a broker in files under var/, no server to run.
    _broker = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "processed_folder": str(_broker / "processed"),
        "control_folder": str(_broker / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Polls of hosts in good standing and everything else on "celery"; the dispatcher sends
# polls of failing hosts to "polls-failing", served by workers of their own. Notifications
# have a queue of their own: a slow or failing webhook never holds up a poll.
CELERY_TASK_ROUTES = {"posture.tasks.generate_report": {"queue": "reports"}, "posture.tasks.send_notification": {"queue": "notify"}}
# Database connections are kept across tasks (Celery's Django fix-up would otherwise close
# them around every task); posture/celery.py closes unusable or too old ones instead.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Retention (posture/retention.py; README "Retention") ---
# 0 keeps that kind of history for ever. A beat task prunes every RETENTION_EVERY seconds,
# in batches of RETENTION_BATCH rows, each batch its own short transaction.
RETENTION_POLL_DAYS = env_int("POSTURE_RETENTION_POLL_DAYS", 14)
RETENTION_SNAPSHOTS = env_int("POSTURE_RETENTION_SNAPSHOTS", 10)  # the last N of each host are always kept
RETENTION_SNAPSHOT_DAYS = env_int("POSTURE_RETENTION_SNAPSHOT_DAYS", 90)  # and the last of each day, this long
RETENTION_HOURLY_AFTER_DAYS = env_int("POSTURE_RETENTION_HOURLY_AFTER_DAYS", 7)  # risk samples: one an hour past this age
RETENTION_DAILY_AFTER_DAYS = env_int("POSTURE_RETENTION_DAILY_AFTER_DAYS", 90)  # one a day past this age
RETENTION_SAMPLE_DAYS = env_int("POSTURE_RETENTION_SAMPLE_DAYS", 400)  # none past this age
RETENTION_EVENT_DAYS = env_int("POSTURE_RETENTION_EVENT_DAYS", 180)  # past it, only each finding's last event of each kind
RETENTION_RESOLVED_DAYS = env_int("POSTURE_RETENTION_RESOLVED_DAYS", 365)  # findings resolved this long go, with their events
RETENTION_BATCH = env_int("POSTURE_RETENTION_BATCH", 2000)
RETENTION_EVERY = env_float("POSTURE_RETENTION_EVERY", 900.0)
if RETENTION_HOURLY_AFTER_DAYS and RETENTION_DAILY_AFTER_DAYS and RETENTION_DAILY_AFTER_DAYS < RETENTION_HOURLY_AFTER_DAYS:
    raise ImproperlyConfigured("POSTURE_RETENTION_DAILY_AFTER_DAYS must not be shorter than POSTURE_RETENTION_HOURLY_AFTER_DAYS")
if RETENTION_BATCH < 1:
    raise ImproperlyConfigured("POSTURE_RETENTION_BATCH must be at least 1")

# --- Email (reports) ---
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend" if os.environ.get("EMAIL_HOST") else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "posture@localhost")
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))  # for the filebased backend
REPORTS_DIR = Path(os.environ.get("POSTURE_REPORTS_DIR", VAR_DIR / "reports"))
REPORT_SOFT_TIME_LIMIT = env_int("POSTURE_REPORT_SOFT_LIMIT", 600)
REPORT_TIME_LIMIT = env_int("POSTURE_REPORT_HARD_LIMIT", 660)
# A report that could not be stored is tried again after this many seconds, doubling (8 tries).
REPORT_RETRY_BASE = env_int("POSTURE_REPORT_RETRY_BASE", 60)
# Processes rendering a report's parts side by side (posture/reports/pdf.py); 0: one per CPU core.
REPORT_WORKERS = env_int("POSTURE_REPORT_WORKERS", 0)
# A worker child that grew past this (KiB) after a task is replaced: WeasyPrint on a
# large fleet is the memory-hungry part.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("POSTURE_WORKER_MAX_MEMORY_KB", 1024 * 1024)

# --- Alerts ---
# Links in alerts point here: the address people reach the dashboard at.
POSTURE_BASE_URL = os.environ.get("POSTURE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
NOTIFY_MAX_RETRIES = env_int("POSTURE_NOTIFY_RETRIES", 5)
# First retry after this many seconds, doubling each time, capped below the broker's
# visibility timeout so a waiting retry is never handed out twice.
NOTIFY_RETRY_BACKOFF = env_float("POSTURE_NOTIFY_BACKOFF", 30.0)
NOTIFY_RETRY_BACKOFF_MAX = 1800
NOTIFY_TIME_LIMIT = 60
# Within this many days of its end an acceptance (or exception) is announced as expiring.
NOTIFY_EXPIRING_DAYS = 7

# --- API ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["posture.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["posture.api.permissions.RolePermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "posture.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Counted in the cache (Redis when REDIS_URL is set), so every web process shares them.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle", "rest_framework.throttling.AnonRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": os.environ.get("POSTURE_API_RATE", "600/min"), "anon": os.environ.get("POSTURE_API_ANON_RATE", "60/min")},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Posture API",
    "DESCRIPTION": "Hosts, findings, exceptions and acceptances, risk history and reports. Send `Authorization: Bearer TOKEN`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files (drf-spectacular-sidecar): the CSP allows 'self' only.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "HostStatusEnum": "posture.models.choices.HostStatus",
        "SeverityEnum": "posture.models.choices.SEVERITY_CHOICES",
        "FindingStatusEnum": "posture.models.choices.FindingStatus",
        "ReportStatusEnum": "posture.models.reports.ReportStatus",
        "EventKindEnum": "posture.models.choices.EventKind",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"weasyprint": {"level": "ERROR"}, "fontTools": {"level": "ERROR"}, "axes": {"level": "WARNING"}},
}

# Login throttling counts failures here; shared by every web process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
}
# Serve straight from static/ until collectstatic has run (tests, first start).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = not (STATIC_ROOT / "posture").exists()

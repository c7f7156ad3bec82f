"""The one settings module. Everything is read from the environment (see README).

Embedded mode (the default): SQLite and uploads in ``LOCALAI_DATA_DIR``, in-memory channel
layer, replies generated on a thread pool inside the web process.
Scaled mode: ``REDIS_URL`` moves the channel layer, the cache and the task queue to Redis,
with separate ``localai worker`` processes; ``DATABASE_URL`` moves the data to PostgreSQL.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .core.crypto import fernet_keys_check
from .core.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_str,
    env_time_zone,
    env_url,
    env_url_path,
)
from .core.queues import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("LOCALAI_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """The configured key, or one generated on first start and kept in the data folder."""
    configured = env_str("SECRET_KEY")
    if configured:
        return configured
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        # O_EXCL: two processes starting at once must not end up with different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# Fernet keys for secrets stored in the database (provider API keys), newest first: add a
# new key in front, run `localai rotate_secrets`, then drop the old one. Without any, one
# is derived from SECRET_KEY.
ENCRYPTION_KEYS = env_list("LOCALAI_ENCRYPTION_KEYS")
fernet_keys_check(ENCRYPTION_KEYS)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
# The peers whose X-Forwarded-* headers are believed (localai_site/middleware.py): the reverse
# proxy's addresses. From anyone else, and from everyone without BEHIND_PROXY, they are dropped.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", ["127.0.0.1", "::1"]) if BEHIND_PROXY else []
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
# Served under a sub-path (https://example.org/ai/): the proxy passes the path on whole, and every
# URL the app makes (reverse(), static files, cookies, sockets: localai_site/middleware.py
# ScriptPrefix) starts with it. "" at the root.
URL_PATH = env_url_path("LOCALAI_URL_PATH")
FORCE_SCRIPT_NAME = URL_PATH or None

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.mfa",
    "accounts",
    "chat",
    "models_hub",
    "billing",
]

MIDDLEWARE = [
    "localai_site.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "localai_site.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.PrivacyChoicesMiddleware",
    "accounts.middleware.MfaRequiredMiddleware",
]

ROOT_URLCONF = "localai_site.urls"
ASGI_APPLICATION = "localai_site.asgi.application"
WSGI_APPLICATION = None

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

# --- Data -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
_sqlite_path = DATA_DIR / "localai.sqlite3"
try:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL or f"sqlite:///{_sqlite_path}",
            conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0, maximum=3600),
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL this app knows: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while a worker writes; IMMEDIATE avoids
        # "database is locked" when two writers upgrade their locks at once; secure_delete
        # overwrites deleted rows, so an erased person's words do not linger in free pages.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=ON;",
    }
    # Tests that start servers or workers in other processes need a file they can share; two
    # test runs at once (LOCALAI_TEST_RUN, set per run by tests/_env.py) each have their own.
    _test_run = env_str("LOCALAI_TEST_RUN")
    _test_name = f"test-{_test_run}.sqlite3" if _test_run else "test.sqlite3"
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / _test_name)}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = f"{URL_PATH}/media/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Absolute, so Django does not add the prefix again; WhiteNoise takes FORCE_SCRIPT_NAME off.
STATIC_URL = f"{URL_PATH}/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the source folders: no collectstatic step is needed to run.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Realtime, cache and tasks ----------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
SCALED = bool(REDIS_URL)

if SCALED:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub: one PUBLISH per event, at most once, which is all live
            # deltas need (the database is the truth) and costs far less CPU per
            # event than the list-based layer, CPU the model would otherwise lose.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNELS_PREFIX", "localai")},
        }
    }
    CACHES = {
        "default": {
            # Fails open while Redis is down (rate limits let requests through), and gives
            # up on a connection quickly, so an outage neither breaks nor stalls sign-in.
            "BACKEND": "localai_site.core.cache.FailOpenRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_PREFIX", "localai"),
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = Queue.DEFAULT.value
# Embedded mode runs the same schedule on a thread of `localai serve` (localai_site/schedule.py).
CELERY_BEAT_SCHEDULE = {
    "fail-stale-replies": {"task": "chat.fail_stale_replies", "schedule": 15.0, "options": {"expires": 15}},
    # Voice recordings a worker that died left behind (each is deleted once transcribed).
    "forget-stale-recordings": {
        "task": "chat.forget_stale_recordings",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
    "enforce-retention": {
        "task": "accounts.enforce_retention",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    "fail-stale-downloads": {
        "task": "models_hub.fail_stale_downloads",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Stripe events whose task was lost, or that came while Stripe could not be read back.
    "retry-stripe-events": {"task": "billing.retry_events", "schedule": 300.0, "options": {"expires": 300}},
    "clear-expired-sessions": {
        "task": "accounts.clear_expired_sessions",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Embedded mode runs tasks on an in-process pool instead of a broker (localai_site/core/tasks.py).
TASKS_IN_PROCESS = not SCALED

# --- Chat -------------------------------------------------------------------------------
CHAT_MAX_MESSAGE_BYTES = env_int("CHAT_MAX_MESSAGE_BYTES", 32 * 1024, minimum=1, maximum=16 * 1024 * 1024)
CHAT_MAX_FRAME_BYTES = env_int("CHAT_MAX_FRAME_BYTES", 64 * 1024, minimum=1024, maximum=32 * 1024 * 1024)
# Frames one socket may send: this many at once, refilled at the rate per minute.
SOCKET_FRAME_BURST = env_int("SOCKET_FRAME_BURST", 20, minimum=1, maximum=100_000)
SOCKET_FRAMES_PER_MINUTE = env_int("SOCKET_FRAMES_PER_MINUTE", 60, minimum=1, maximum=1_000_000)
# Frames one person may send in a clock minute across all their sockets and web processes.
SOCKET_PERSON_FRAMES_PER_MINUTE = env_int(
    "SOCKET_PERSON_FRAMES_PER_MINUTE", 120, minimum=1, maximum=1_000_000
)
# Threads of a web process running its sockets' database work (each may hold a connection).
SOCKET_DATABASE_THREADS = env_int("SOCKET_DATABASE_THREADS", 8, minimum=1, maximum=256)
CHAT_MAX_TOKENS = env_int("CHAT_MAX_TOKENS", 1024, minimum=1, maximum=1_000_000)
CHAT_TEMPERATURE = env_float("CHAT_TEMPERATURE", 0.7, minimum=0, maximum=2)
# Deltas go to the socket in batches: one every interval, the first token at once.
CHAT_FLUSH_INTERVAL_S = env_float("CHAT_FLUSH_INTERVAL_MS", 50, minimum=0, maximum=5000) / 1000
# How often the growing reply is written to the database while it streams.
CHAT_SAVE_INTERVAL_S = env_float("CHAT_SAVE_INTERVAL_MS", 1000, minimum=50, maximum=60_000) / 1000
# A streaming reply whose worker has not written for this long is marked failed.
CHAT_STALE_AFTER_S = env_int("CHAT_STALE_AFTER_S", 30, minimum=5, maximum=86_400)
# A queued reply no worker has picked up in this long is marked failed.
CHAT_QUEUED_TIMEOUT_S = env_int("CHAT_QUEUED_TIMEOUT_S", 600, minimum=10, maximum=86_400)
# Queued or streaming replies one person may have at once, across their conversations.
CHAT_MAX_ACTIVE_REPLIES = env_int("CHAT_MAX_ACTIVE_REPLIES", 2, minimum=1, maximum=10_000)
# Database connections one process's replies use at once, before and after they stream (one
# thread more saves them while they stream): PostgreSQL allows 100 by default, for all processes.
CHAT_DATABASE_CONNECTIONS = env_int("CHAT_DATABASE_CONNECTIONS", 8, minimum=1, maximum=256)
# The largest file a person may upload (PDF, image or plain text).
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_MB", 25, minimum=1, maximum=100_000) * 1024 * 1024
# Images are decoded to be re-encoded: larger ones are refused (a decompression bomb is a
# small file that decodes to gigabytes), and those kept are scaled to this longest side.
UPLOAD_IMAGE_MAX_PIXELS = env_int("UPLOAD_IMAGE_MAX_MEGAPIXELS", 50, minimum=1, maximum=1000) * 1_000_000
UPLOAD_IMAGE_MAX_SIDE = env_int("UPLOAD_IMAGE_MAX_SIDE", 2048, minimum=64, maximum=16_384)
# Longer PDFs are refused: their text is read page by page into the database.
UPLOAD_PDF_MAX_PAGES = env_int("UPLOAD_PDF_MAX_PAGES", 2000, minimum=1, maximum=100_000)
# PDFium and Pillow run in a child process; one step (checking an upload, reading 50 pages,
# OCR of one page) taking longer is stopped and its child killed: a hung decoder holds nothing.
DOCUMENT_TIMEOUT_SECONDS = env_int("DOCUMENT_TIMEOUT_SECONDS", 60, minimum=1, maximum=3600)
# Tesseract reads scanned PDF pages when this command is found; empty turns OCR off.
TESSERACT_COMMAND = env_str("TESSERACT_COMMAND", "tesseract")
# Voice input: recordings longer or larger than this are refused before transcription.
VOICE_MAX_SECONDS = env_int("VOICE_MAX_SECONDS", 120, minimum=1, maximum=3600)
VOICE_MAX_BYTES = env_int("VOICE_MAX_MB", 10, minimum=1, maximum=1000) * 1024 * 1024
# A transcription taking longer is stopped (its child process killed): a hung decoder must
# not hold the local queue. The default lets the longest recording go at half real time.
VOICE_TRANSCRIBE_TIMEOUT_SECONDS = env_int(
    "VOICE_TRANSCRIBE_TIMEOUT_SECONDS", max(60, 2 * VOICE_MAX_SECONDS), minimum=5, maximum=7200
)

# How long a cloud provider may take to answer (seconds), and how often a failure to
# connect is retried before the reply fails.
CLOUD_TIMEOUT_S = env_float("CLOUD_TIMEOUT_S", 60, minimum=1, maximum=3600)
CLOUD_CONNECT_ATTEMPTS = env_int("CLOUD_CONNECT_ATTEMPTS", 3, minimum=1, maximum=20)
# Cloud-queue tasks (replies, images, transcriptions) one process runs at once: a worker
# serving the `cloud` queue, or the web process in embedded mode. Each is a thread waiting on
# the provider, holding no database connection while a reply streams.
CLOUD_CONCURRENCY = env_int("CLOUD_CONCURRENCY", 256, minimum=1, maximum=4096)
# Images take longer than replies: how long an image provider may take for one request.
IMAGE_TIMEOUT_S = env_float("IMAGE_TIMEOUT_S", 180, minimum=1, maximum=3600)

# --- Billing ----------------------------------------------------------------------------
# Stripe's secret key turns billing on (README, "Billing"); without it plans are assigned by
# admins and nothing is sold. The API base is Stripe's, or a test double's on loopback.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env_url("STRIPE_API_BASE", "https://api.stripe.com")
BILLING_ENABLED = bool(STRIPE_SECRET_KEY)
# Checkout and the Customer Portal are Stripe's pages: the plan page's forms redirect there.
BILLING_REDIRECT_ORIGINS = (
    ["https://checkout.stripe.com", "https://billing.stripe.com"] if BILLING_ENABLED else []
)
if BILLING_ENABLED and not STRIPE_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "STRIPE_WEBHOOK_SECRET (whsec_…, from the webhook endpoint in Stripe) "
        "is needed with STRIPE_SECRET_KEY."
    )

# --- Local models -----------------------------------------------------------------------
# The cores this process may use (a container's cpuset or taskset), not the host's count.
LLAMA_THREADS = env_int("LLAMA_THREADS", len(os.sched_getaffinity(0)), minimum=1, maximum=1024)
LLAMA_CONTEXT = env_int("LLAMA_CONTEXT", 4096, minimum=256, maximum=10_000_000)
LLAMA_GPU_LAYERS = env_int("LLAMA_GPU_LAYERS", 0, minimum=-1, maximum=10_000)
# Memory a worker may fill with loaded models; the least recently used one is unloaded to
# make room. 0: 80 % of the machine's (or the container's) memory.
LOCAL_MODEL_MEMORY_MB = env_int("LOCAL_MODEL_MEMORY_MB", 0, minimum=0, maximum=1 << 30)
# A loaded model unused for this long is unloaded (0: kept until room is needed).
LOCAL_MODEL_IDLE_UNLOAD_S = env_int("LOCAL_MODEL_IDLE_UNLOAD_S", 1800, minimum=0, maximum=365 * 86_400)
# Replies a loaded text model writes at once (its slots, models_hub.batching), unless the hub
# sets it for the model; a vision model writes one at a time. Each slot's KV cache takes memory.
# At most models_hub.models.PARALLEL_REPLIES_MAX.
LOCAL_PARALLEL_REPLIES = env_int("LOCAL_PARALLEL_REPLIES", 4, minimum=1, maximum=16)
# Local-queue tasks one process runs at once: a `local`-only worker, or the web process in
# embedded mode. More replies than a model's slots wait inside the runner, which gives the
# next free slot to whoever has the fewest replies being written.
LOCAL_CONCURRENCY = env_int("LOCAL_CONCURRENCY", 8, minimum=1, maximum=1024)

# --- Model hub --------------------------------------------------------------------------
MODELS_DIR = Path(env_str("LOCALAI_MODELS_DIR", str(DATA_DIR / "models"))).resolve()
# Hugging Face, or a mirror that answers the same way (/<repo>/resolve/<revision>/<file>).
HF_ENDPOINT = env_url("HF_ENDPOINT", "https://huggingface.co")
HUB_TIMEOUT_S = env_float("HUB_TIMEOUT_S", 30, minimum=1, maximum=3600)
# A dropped connection is resumed from where it broke this many times in a row.
HUB_RETRIES = env_int("HUB_RETRIES", 5, minimum=0, maximum=100)
# Disk space that must remain free after a download.
HUB_DISK_RESERVE_MB = env_int("HUB_DISK_RESERVE_MB", 1024, minimum=0, maximum=1 << 30)
# How often a download reports its progress (browsers, database, cancel check).
HUB_PROGRESS_INTERVAL_S = env_float("HUB_PROGRESS_INTERVAL_MS", 500, minimum=50, maximum=60_000) / 1000
# A download that made no progress for this long (its worker died) is marked failed.
HUB_STALE_AFTER_S = env_int("HUB_STALE_AFTER_S", 120, minimum=10, maximum=86_400)

# --- Privacy ----------------------------------------------------------------------------
# How long each kind of record is kept, in days; enforced every hour and by
# `localai enforce_retention`. A system check refuses crash reports kept over 90 days.
RETENTION_DAYS = {
    "crash_reports": env_int("RETENTION_CRASH_REPORTS_DAYS", 90, minimum=1, maximum=36_500),
    "export_archives": env_int("RETENTION_EXPORT_ARCHIVES_DAYS", 7, minimum=1, maximum=365),
    # Raw analytics events are counted into daily totals and deleted once their day is over.
    "analytics_events": env_int("RETENTION_ANALYTICS_EVENTS_DAYS", 1, minimum=1, maximum=365),
    "finished_data_requests": env_int("RETENTION_DATA_REQUESTS_DAYS", 3 * 365, minimum=30, maximum=36_500),
    # An invitation nobody used holds the invitee's address: it lapses and goes.
    "unused_invitations": env_int("RETENTION_UNUSED_INVITATIONS_DAYS", 30, minimum=1, maximum=365),
    # A file attached in the composer and never sent: its page is gone, so nobody can send it.
    "unsent_uploads": env_int("RETENTION_UNSENT_UPLOADS_DAYS", 1, minimum=1, maximum=365),
    # Invoices are kept for tax law (ten years in much of the EU), without the person once erased.
    "invoices": env_int("RETENTION_INVOICES_DAYS", 10 * 365, minimum=365, maximum=36_500),
    # Ids of Stripe events seen: a retry comes within three days.
    "stripe_events": env_int("RETENTION_STRIPE_EVENTS_DAYS", 30, minimum=4, maximum=3650),
}
# New kinds of crash report stored per hour; repeats of a stored one only raise its count.
CRASH_REPORTS_PER_HOUR = env_int("CRASH_REPORTS_PER_HOUR", 60, minimum=1, maximum=100_000)
# Data downloads one person may ask for in 24 hours (admins answering a request are not counted).
EXPORTS_PER_DAY = env_int("EXPORTS_PER_DAY", 3, minimum=1, maximum=1000)

# --- Accounts ---------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
SIGNUP_MODE_DEFAULT = env_choice("SIGNUP_MODE", "open", ("open", "invite", "closed"))
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.SignupConsentForm"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env_choice(
    "ACCOUNT_EMAIL_VERIFICATION", "none", ("none", "optional", "mandatory")
)
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = True
LOGIN_REDIRECT_URL = "chat:home"
LOGIN_URL = "account_login"

# Multi-factor sign-in (allauth.mfa): an authenticator app with recovery codes, and passkeys,
# which also sign in on their own. Who must have one is an instance setting (accounts.mfa).
MFA_ADAPTER = "accounts.adapters.MfaAdapter"
# Who must have a second factor on a new instance; admins change it later (Instance settings).
MFA_REQUIRED_DEFAULT = env_choice("MFA_REQUIRED", "nobody", ("nobody", "staff", "everyone"))
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
# allauth refuses a second factor to an account whose address nobody verified (a squatter
# could lock the owner out of it); with verification off, the default, no address is ever
# verified and nobody could set one up. With it mandatory, every account is verified anyway.
MFA_ALLOW_UNVERIFIED_EMAIL = True

SOCIALACCOUNT_PROVIDERS: dict[str, dict] = {}
# Where each configured provider's sign-in page is: the Content-Security-Policy's form-action
# must allow it (localai_site/middleware.py).
SOCIAL_SIGN_IN_ORIGINS: list[str] = []
if env_str("GOOGLE_CLIENT_ID"):
    SOCIALACCOUNT_PROVIDERS["google"] = {
        "APPS": [{"client_id": env_str("GOOGLE_CLIENT_ID"), "secret": env_str("GOOGLE_CLIENT_SECRET")}],
        "SCOPE": ["email", "profile"],
    }
    SOCIAL_SIGN_IN_ORIGINS.append("https://accounts.google.com")
if env_str("APPLE_CLIENT_ID"):
    SOCIALACCOUNT_PROVIDERS["apple"] = {
        "APPS": [
            {
                "client_id": env_str("APPLE_CLIENT_ID"),
                "secret": env_str("APPLE_KEY_ID"),
                "key": env_str("APPLE_TEAM_ID"),
                "settings": {"certificate_key": env_str("APPLE_PRIVATE_KEY")},
            }
        ]
    }
    SOCIAL_SIGN_IN_ORIGINS.append("https://appleid.apple.com")
# Only a configured provider is installed: an installed one without credentials has sign-in
# routes that can only fail (500 and a crash report per visit).
INSTALLED_APPS += [f"allauth.socialaccount.providers.{provider}" for provider in SOCIALACCOUNT_PROVIDERS]
SOCIALACCOUNT_FORMS = {"disconnect": "accounts.connections.ConnectionsForm"}
# Google or Apple sign-up shows the signup form too: nobody gets an account without
# confirming their age and being shown the policy (the form records both).
SOCIALACCOUNT_AUTO_SIGNUP = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65_535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "LocalAI <localai@localhost>")

# --- Security ---------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Under a sub-path the cookies are sent to it only, not to other apps of the same host.
SESSION_COOKIE_PATH = CSRF_COOKIE_PATH = URL_PATH or "/"
# Said instead by localai.W001 (accounts/checks.py), which names SECURE_COOKIES.
SILENCED_SYSTEM_CHECKS = ["security.W012", "security.W016"]
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * 365 * 86_400)
# /healthz and /readyz answer probes that use internal host names (localai_site/middleware.py).
# (Matched against the path without its leading slash: under a sub-path, with it or without.)
_probe_prefix = f"(?:{re.escape(URL_PATH.lstrip('/'))}/)?" if URL_PATH else ""
SECURE_REDIRECT_EXEMPT = [rf"^{_probe_prefix}healthz$", rf"^{_probe_prefix}readyz$"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_time_zone("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper()
# json: one JSON object a line, for a log collector (accounts/json_logs.py; secrets scrubbed).
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "accounts.json_logs.JsonLogFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
        # Errors with a traceback become crash reports stored on this instance, scrubbed.
        "crash_reports": {"class": "accounts.crashes.CrashReportHandler", "level": "ERROR"},
    },
    "root": {"handlers": ["console", "crash_reports"], "level": LOG_LEVEL},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# /metrics (localai_site/metrics.py) answers a scraper with this bearer token, or one from
# these addresses or networks; with neither set it is off (404).
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 24`).")
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS", [])

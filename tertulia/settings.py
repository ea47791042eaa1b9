"""Django settings for Tertulia, read from the environment (12-factor).

With nothing set, Tertulia runs on the embedded default: SQLite under $TERTULIA_HOME and a
secret key generated once and kept there. Production sets DATABASE_URL, SECRET_KEY,
ALLOWED_HOSTS, EMAIL_URL and optionally REDIS_URL; TERTULIA_HTTPS=1 turns on the HTTPS-only
cookie and redirect settings that `tertulia check --deploy` asks for.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
import dj_email_url

BASE_DIR = Path(__file__).resolve().parent


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


TERTULIA_HOME = Path(os.environ.get("TERTULIA_HOME", ".tertulia")).resolve()


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    # Embedded default: one key per $TERTULIA_HOME, created on first use and kept private.
    TERTULIA_HOME.mkdir(parents=True, exist_ok=True)
    path = TERTULIA_HOME / "secret_key"
    if not path.exists():
        # Several processes may start at once on a fresh home (gunicorn's workers, the worker): the key
        # is written whole to a private file, then linked into place, which fails if another got there
        # first. Either way every process then reads the one complete key.
        draft = TERTULIA_HOME / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DEBUG")
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "ninja",
    "tertulia.core",
    "tertulia.catalog",
    "tertulia.customers",
    "tertulia.commerce",
    "tertulia.events",
    "tertulia.channels",
    "tertulia.journeys",
    "tertulia.moderation",
    "tertulia.ugc",
    "tertulia.listening",
    "tertulia.inbox",
    "tertulia.dashboard",
    "tertulia.ops",
]

MIDDLEWARE = [
    "tertulia.core.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tertulia.urls"
WSGI_APPLICATION = "tertulia.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{TERTULIA_HOME / 'tertulia.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web processes read while the worker writes; IMMEDIATE transactions take the
    # write lock up front so concurrent writers queue on busy_timeout instead of deadlocking.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
            "PRAGMA busy_timeout=30000; PRAGMA cache_size=-64000;"
        ),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0 if os.environ.get("PYTEST_XDIST_WORKER") else 60
DATABASES["default"].setdefault("TEST", {})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- E-mail ---------------------------------------------------------------------------------
EMAIL_URL = os.environ.get("EMAIL_URL")
if EMAIL_URL:
    _email = dj_email_url.parse(EMAIL_URL)
    # smtp+tls:// and smtp+ssl:// (as docs/deploy.md writes them) name no backend in dj-email-url: SMTP.
    EMAIL_BACKEND = _email.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    EMAIL_HOST = _email["EMAIL_HOST"]
    EMAIL_PORT = _email["EMAIL_PORT"]
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
    EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
    EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
    if _email.get("EMAIL_FILE_PATH"):
        EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
else:
    # The built-in outbox (channels.outbox): mail is kept in the database and shown in the dashboard.
    EMAIL_BACKEND = "tertulia.channels.outbox.OutboxEmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Tertulia <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Channels (docs/channels.md). Sandbox: SMS and DMs of stores without a provider account go to the outbox
# instead of failing; on by default when EMAIL_URL is unset (the demo and development).
TERTULIA_CHANNELS_SANDBOX = _env_bool("TERTULIA_CHANNELS_SANDBOX", not EMAIL_URL)
# Per-channel adapter override, e.g. "email=tertulia.channels.adapters.null.NullAdapter" (the benchmark).
TERTULIA_CHANNEL_ADAPTERS = dict(item.split("=", 1) for item in _env_list("TERTULIA_CHANNEL_ADAPTERS") if "=" in item)
# Old SECRET_KEYs still accepted for signatures and stored provider secrets while rotating keys.
SECRET_KEY_FALLBACKS = _env_list("SECRET_KEY_FALLBACKS")

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "dashboard:login"
# Failed logins allowed per username and per client address within the window below.
LOGIN_THROTTLE_ATTEMPTS = int(os.environ.get("LOGIN_THROTTLE_ATTEMPTS", "5"))
LOGIN_THROTTLE_WINDOW = int(os.environ.get("LOGIN_THROTTLE_WINDOW", "900"))

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "es"
LANGUAGES = [("es", "Español"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Uploaded media (review photos): under $TERTULIA_HOME/media, served by ugc's photo view ----
MEDIA_ROOT = os.environ.get("MEDIA_ROOT") or str(TERTULIA_HOME / "media")
MEDIA_URL = "/media/"
# Browser origins allowed to call the public community API of every store, beside each store's own.
TERTULIA_UGC_CORS_ORIGINS = _env_list("TERTULIA_UGC_CORS_ORIGINS")

# --- Security -------------------------------------------------------------------------------
HTTPS = _env_bool("TERTULIA_HTTPS")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _env_bool("TRUST_X_FORWARDED_PROTO") else None
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Bodies over 5 MB are refused with 413 before they are read (see core.middleware).
TERTULIA_MAX_BODY_BYTES = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = TERTULIA_MAX_BODY_BYTES
TERTULIA_MAX_BATCH = 1000

# --- Messages: absolute base of the links Tertulia puts in messages (tracking, unsubscribe, answers) ---
TERTULIA_PUBLIC_URL = os.environ.get("TERTULIA_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

# --- Listening: stores that classify with a local Hugging Face model instead of the built-in one ---
# "slug=/dir,*=/dir" ("*": every other store; "slug=" keeps a store on the built-in model). Needs the
# transformers extra; a model that cannot load is logged and the built-in model is used. docs/listening.md.
TERTULIA_LISTENING_MODELS = {slug.strip(): path.strip() for slug, path in (
    item.split("=", 1) for item in _env_list("TERTULIA_LISTENING_MODELS") if "=" in item)}
TERTULIA_LISTENING_INTENT_MODELS = {slug.strip(): path.strip() for slug, path in (
    item.split("=", 1) for item in _env_list("TERTULIA_LISTENING_INTENT_MODELS") if "=" in item)}

# --- Background work ------------------------------------------------------------------------
TASKS = {"default": {"BACKEND": "tertulia.core.tasks_backend.DatabaseBackend"}}

# --- Logging: one JSON object per line -----------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "tertulia.core.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
    },
}

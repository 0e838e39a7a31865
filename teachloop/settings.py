"""TeachLoop settings, all from the environment.

Embedded default (nothing set): SQLite, in-memory channel layer, DEBUG on, a generated dev
secret key, data under ./var. Production: set DEBUG=0, SECRET_KEY, ALLOWED_HOSTS,
DATABASE_URL (PostgreSQL) and REDIS_URL. See "Configuration" in README.md and docs/deploy.md.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from training.core.config import REPORTERS  # plain Python: the trackers the trainer knows

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)

DATA_DIR = Path(os.environ.get("TEACHLOOP_DATA_DIR", BASE_DIR / "var")).resolve()
TEACHLOOP_DATA_DIR = DATA_DIR
TEACHLOOP_MODEL_CACHE_DIR = Path(os.environ.get("TEACHLOOP_MODEL_CACHE_DIR", DATA_DIR / "models")).resolve()

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # A dev key that survives restarts (sessions stay valid) without living in the repo.
    key_file = DATA_DIR / "dev-secret-key"
    try:
        SECRET_KEY = key_file.read_text().strip()
    except FileNotFoundError:
        SECRET_KEY = secrets.token_urlsafe(50)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(SECRET_KEY)
        key_file.chmod(0o600)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI (HTTP + WebSocket)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "training",
    "tutor",
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
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out sign-in into its page
    "teachloop.middleware.SyncChain",  # last: the chain runs in one thread (teachloop/middleware.py)
]

ROOT_URLCONF = "teachloop.urls"
ASGI_APPLICATION = "teachloop.asgi.application"
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

# --- database --------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
# Connections per process (PostgreSQL): a pool, never persistent per-thread connections. Under ASGI
# each request's sync code runs in a thread of its own, so CONN_MAX_AGE connections pile up until the
# server refuses more ("too many clients": 50 clients, 2 web processes, bench/load.py); the pool hands
# one back when the request ends. Size it so every process's maximum fits max_connections.
TEACHLOOP_DB_POOL_SIZE = int(os.environ.get("TEACHLOOP_DB_POOL_SIZE", "8"))
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": TEACHLOOP_DB_POOL_SIZE,
        "timeout": 30,  # seconds a request waits for a free connection before it fails
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "teachloop.sqlite3",
            # The web thread and the in-process worker write concurrently: WAL lets readers
            # go on during a write, IMMEDIATE takes the write lock up front instead of failing
            # with "database is locked" on upgrade, and the timeout waits for it.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
    DATA_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channels --------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Redis connections one process's channel layer may hold at once. Every socket that joins or leaves
# a group at the same moment takes one: at redis-py's default (100) a class of 200 closing their
# pages together failed some leaves with "Too many connections" (docs/benchmarks/load.md).
TEACHLOOP_REDIS_MAX_CONNECTIONS = int(os.environ.get("TEACHLOOP_REDIS_MAX_CONNECTIONS", "1000"))
if TEACHLOOP_REDIS_MAX_CONNECTIONS < 1:
    raise ImproperlyConfigured(
        f"TEACHLOOP_REDIS_MAX_CONNECTIONS must be at least 1, got {TEACHLOOP_REDIS_MAX_CONNECTIONS}"
    )
# Threads torch computes with in this process (0: torch's default, one per core). Every process that
# generates or trains takes all the cores by default; two such processes on the same cores ran ~10x
# slower each (docs/benchmarks/load.md). Give each its share: the cores divided by such processes.
TEACHLOOP_TORCH_THREADS = int(os.environ.get("TEACHLOOP_TORCH_THREADS", "0"))
if TEACHLOOP_TORCH_THREADS < 0:
    raise ImproperlyConfigured(f"TEACHLOOP_TORCH_THREADS must be 0 or more, got {TEACHLOOP_TORCH_THREADS}")
# training.apps applies it when Django starts (before torch loads in web processes and workers).
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # redis-py 8 times out idle reads unless socket_timeout is None (STACK-NOTES).
                        "socket_timeout": None,
                        "max_connections": TEACHLOOP_REDIS_MAX_CONNECTIONS,
                    }
                ]
            },
        }
    }
else:
    # Channels' in-memory layer, made safe for the in-process worker's sends (teachloop/channel_layers.py).
    CHANNEL_LAYERS = {"default": {"BACKEND": "teachloop.channel_layers.ThreadSafeInMemoryChannelLayer"}}

# --- background tasks ------------------------------------------------------------------
TASKS = {
    "default": {
        "BACKEND": os.environ.get("TEACHLOOP_TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
        "QUEUES": ["default", "training"],
    }
}
# `manage.py serve` runs a worker thread in the web process unless this is off (it must be off
# when REDIS_URL is unset and workers are separate processes: their progress could not reach
# the browser through the in-memory channel layer).
TEACHLOOP_INPROCESS_WORKER = env_bool("TEACHLOOP_INPROCESS_WORKER", not REDIS_URL)
# Where the pages' model replies (learners' tutor, Try it, the Playground) are generated: "inline" (a
# thread of the web process: the embedded default, whose worker lives there anyway) or "workers" (the
# `manage.py worker` processes, over the channel layer: web processes never load a model).
TEACHLOOP_GENERATION = os.environ.get("TEACHLOOP_GENERATION", "").strip().lower() or (
    "inline" if TEACHLOOP_INPROCESS_WORKER else "workers"
)
if TEACHLOOP_GENERATION not in ("inline", "workers"):
    raise ImproperlyConfigured(
        f"TEACHLOOP_GENERATION must be inline or workers, got {TEACHLOOP_GENERATION!r}"
    )
if TEACHLOOP_GENERATION == "workers" and not REDIS_URL:
    raise ImproperlyConfigured(
        "TEACHLOOP_GENERATION=workers needs REDIS_URL: the workers answer through the Redis channel layer"
    )
# A model behind an OpenAI-compatible server, asked by a page (learners' tutor, Try it, the Playground):
# give up after this many seconds without a byte, retried this many times, so a person is told within
# about a minute that the teacher is not answering. Teaching runs and evaluations keep the registry's
# patient defaults (120 s, 3 retries): nobody is waiting on a page for them.
TEACHLOOP_PAGE_TIMEOUT_S = float(os.environ.get("TEACHLOOP_PAGE_TIMEOUT_S", "30"))
TEACHLOOP_PAGE_RETRIES = int(os.environ.get("TEACHLOOP_PAGE_RETRIES", "1"))
if TEACHLOOP_PAGE_TIMEOUT_S <= 0 or TEACHLOOP_PAGE_RETRIES < 0:
    raise ImproperlyConfigured(
        "TEACHLOOP_PAGE_TIMEOUT_S must be above 0 and TEACHLOOP_PAGE_RETRIES 0 or more"
    )
# Training jobs send a heartbeat this often; one silent for TEACHLOOP_JOB_STALE_AFTER_S has lost
# its worker and is re-queued (resuming from its checkpoint) or failed after max attempts.
TEACHLOOP_JOB_HEARTBEAT_S = float(os.environ.get("TEACHLOOP_JOB_HEARTBEAT_S", "10"))
TEACHLOOP_JOB_STALE_AFTER_S = float(os.environ.get("TEACHLOOP_JOB_STALE_AFTER_S", "90"))
TEACHLOOP_RECOVER_EVERY_S = float(os.environ.get("TEACHLOOP_RECOVER_EVERY_S", "30"))
# GPUs one training job uses: "auto" = every GPU this worker sees (several → accelerate launch, DDP),
# or a number; CPU hosts always train in the worker process.
TEACHLOOP_TRAIN_GPUS = os.environ.get("TEACHLOOP_TRAIN_GPUS", "auto")
if TEACHLOOP_TRAIN_GPUS.strip().lower() != "auto" and not TEACHLOOP_TRAIN_GPUS.strip().isdigit():
    raise ImproperlyConfigured(
        f"TEACHLOOP_TRAIN_GPUS must be 'auto' or a number, got {TEACHLOOP_TRAIN_GPUS!r}"
    )
# The experiment tracker training jobs report to through TRL: none, tensorboard (events in the job's
# folder), mlflow or wandb (their own environment variables say where). The package is not installed
# with TeachLoop: a job whose tracker is missing fails at once, naming the package.
TEACHLOOP_REPORT_TO = os.environ.get("TEACHLOOP_REPORT_TO", "none").strip().lower() or "none"
if TEACHLOOP_REPORT_TO not in REPORTERS:
    raise ImproperlyConfigured(
        f"TEACHLOOP_REPORT_TO must be one of {', '.join(REPORTERS)}, got {TEACHLOOP_REPORT_TO!r}"
    )
# How long the admin "try it" action waits for the background worker before saying it is queued
# (0: it does not wait; no request waits on a model).
TEACHLOOP_TRY_WAIT_S = float(os.environ.get("TEACHLOOP_TRY_WAIT_S", "0"))
# Where a served teacher (vLLM) sees TEACHLOOP_DATA_DIR, for loading adapters into it from the Adapters
# page: an adapter at DATA_DIR/jobs/… is sent as <this>/jobs/…. Empty: the server sees the same paths.
TEACHLOOP_VLLM_ADAPTER_DIR = os.environ.get("TEACHLOOP_VLLM_ADAPTER_DIR", "").strip()

# --- tutoring human learners ----------------------------------------------------------
# The share of concept explanations shown as two alternatives for the learner to choose the
# clearer one (pairwise preference data for DPO); 0 turns pairs off.
TEACHLOOP_TUTOR_ALTERNATIVES_SHARE = float(os.environ.get("TEACHLOOP_TUTOR_ALTERNATIVES_SHARE", "0.2"))
if not 0.0 <= TEACHLOOP_TUTOR_ALTERNATIVES_SHARE <= 1.0:
    raise ImproperlyConfigured(
        "TEACHLOOP_TUTOR_ALTERNATIVES_SHARE must be between 0 and 1, "
        f"got {TEACHLOOP_TUTOR_ALTERNATIVES_SHARE}"
    )
# Teacher calls one learner may cause (over all their sessions): replies to wrong answers, questions
# and retries per minute, and replies being written at once. The course's own texts never count.
TEACHLOOP_LEARNER_GENERATIONS_PER_MINUTE = int(
    os.environ.get("TEACHLOOP_LEARNER_GENERATIONS_PER_MINUTE", "10")
)
TEACHLOOP_LEARNER_CONCURRENT_GENERATIONS = int(
    os.environ.get("TEACHLOOP_LEARNER_CONCURRENT_GENERATIONS", "3")
)
for _name in ("TEACHLOOP_LEARNER_GENERATIONS_PER_MINUTE", "TEACHLOOP_LEARNER_CONCURRENT_GENERATIONS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1, got {globals()[_name]}")
# Anyone may create a learner account at /learn/signup/; off: accounts come from an admin. Open by
# default only with DEBUG on: a public server opens sign-up on purpose.
TEACHLOOP_OPEN_SIGNUP = env_bool("TEACHLOOP_OPEN_SIGNUP", DEBUG)

# --- auth ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (teachloop/login_throttle.py): after TEACHLOOP_LOGIN_FAILURE_LIMIT failed
# sign-ins in a row of one username from one address, that pair waits TEACHLOOP_LOGIN_COOLOFF_MIN.
AUTHENTICATION_BACKENDS = [
    "teachloop.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("TEACHLOOP_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("TEACHLOOP_LOGIN_COOLOFF_MIN", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # behind one proxy address: per username
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- i18n / static ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "static"))
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing root
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- production hardening (check --deploy is clean with DEBUG=0 and HTTPS settings) ----
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preload lists are hard to leave (months), so asking for them is opt-in; check --deploy's
    # reminder about it (security.W021) is silenced while it is off.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django": {"level": "INFO"}, "daphne": {"level": "WARNING"}},
}

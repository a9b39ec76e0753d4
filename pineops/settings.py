"""PineOps settings: one file, driven by environment variables (and `.env`).

Safe defaults for a single box (SQLite in WAL mode under RUNTIME_DIR, local Redis). No secret
has a default: in production SECRET_KEY must be set; in development one is generated once.
"""
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import environ

from pineops.env import BASE_DIR, load_env
from pineops.envcheck import environment_problems, rate_limits, roles, worker_strategies
from pineops.process import headless_process

load_env()
env = environ.Env()
_problems = environment_problems(os.environ)
if _problems:
    raise environ.ImproperlyConfigured("\n".join(_problems))

PINEOPS_ENV = env.str("PINEOPS_ENV", default="development").lower()
if PINEOPS_ENV not in ("development", "production"):
    raise environ.ImproperlyConfigured(f"PINEOPS_ENV must be 'development' or 'production', not {PINEOPS_ENV!r}")
PRODUCTION = PINEOPS_ENV == "production"
DEBUG = env.bool("DEBUG", default=not PRODUCTION) and not PRODUCTION

RUNTIME_DIR = Path(env.str("RUNTIME_DIR", default=str(BASE_DIR / "var"))).resolve()
RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
MODELS_DIR = Path(env.str("MODELS_DIR", default=str(BASE_DIR / "models"))).resolve()
BAR_STORE_DIR = Path(env.str("BAR_STORE_DIR", default=str(RUNTIME_DIR / "bars"))).resolve()


def _development_secret_key() -> str:
    path = RUNTIME_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY")  # required: ImproperlyConfigured names it when missing
    if not SECRET_KEY.strip():  # `SECRET_KEY=` in .env: refuse now, not with a 500 on the first request
        raise environ.ImproperlyConfigured("Set the SECRET_KEY environment variable (it is empty)")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "pineops.admin_site.PineOpsAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "axes",
    "trading",
]
if headless_process():  # never a Celery task nor a periodic task's row there (pineops.process)
    INSTALLED_APPS.remove("django_celery_beat")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout flagged during authentication into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pineops.urls"
WSGI_APPLICATION = "pineops.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "trading" / "templates"],
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

# --- Database: SQLite (WAL) by default, PostgreSQL through DATABASE_URL ------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{RUNTIME_DIR / 'pineops.sqlite3'}")}
# Connections are kept (the worker, hub and sender would otherwise reconnect at every loop round) and checked
# before each reuse after a round or a request: one that broke (the database restarted) is replaced, not used.
DATABASES["default"].setdefault("CONN_MAX_AGE", None)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # Several processes write: WAL lets readers run beside one writer, IMMEDIATE takes the
            # write lock up front so a transaction never fails half way on "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    DATABASES["default"].setdefault("TEST", {})
elif "postgresql" in DATABASES["default"]["ENGINE"]:
    # A database host that stops answering fails a connect in 5 s instead of hanging a worker past its lock.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # A session left in a transaction by a host that was lost (powered off, cut off the network) holds its
    # row locks until PostgreSQL ends it: this ends it after PINEOPS_DB_IDLE_TRANSACTION_SECONDS, so the
    # host that took the strategy over is not blocked for the hours TCP takes to notice.
    idle = env.int("PINEOPS_DB_IDLE_TRANSACTION_SECONDS", default=60)
    DATABASES["default"]["OPTIONS"].setdefault("options", f"-c idle_in_transaction_session_timeout={idle * 1000}")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Login throttling (django-axes): failures are counted per username and, separately, per address;
# either reaching the limit locks it for the cool-off (a right password is refused meanwhile). The
# lockouts are listed in the admin (Axes → Access attempts) and alerted once each (trading.security).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out user or address before the password
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("PINEOPS_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("PINEOPS_LOGIN_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = False  # a success from one address never wipes the failures another address made
AXES_LOCKOUT_CALLABLE = "trading.security.lockout_response"
AXES_VERBOSE = False  # no startup banner in every command; lockouts are logged by trading.security
# Behind N reverse proxies (each appending to X-Forwarded-For) the client is the N-th address from
# the right; with none (the default) only REMOTE_ADDR counts, so a client cannot choose its address.
PROXY_COUNT = env.int("PINEOPS_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "trading.security.client_address"

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

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(RUNTIME_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

LOGIN_URL = "admin:login"

# --- Production hardening (checked by `manage.py check --deploy`) ----------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    # TLS is terminated in front of the container; these follow the operator's choice.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    # Preloading is an operator's opt-in (it binds the whole domain to HTTPS in browsers for good),
    # so its absence is not a deploy-check warning here.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# --- Redis and Celery -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
REDIS_PREFIX = env.str("REDIS_PREFIX", default="pineops")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "trading.beat:SingleBeatScheduler"  # django-celery-beat's, once across hosts
CELERY_BEAT_SYNC_EVERY = 1  # each schedule's last run reaches the database at once: the dashboard shows beat alive
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One queue per installation prefix: appliances (or test runs) sharing a Redis never take each other's tasks.
CELERY_TASK_DEFAULT_QUEUE = f"{REDIS_PREFIX}.tasks"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Trading ----------------------------------------------------------------------------------
# How long an order claim held on another host counts as alive (longer than any POST's timeout).
ORDER_CLAIM_LEASE_SECONDS = env.int("PINEOPS_CLAIM_LEASE_SECONDS", default=120)
# Orders to one TradersPost webhook: at most count per seconds, for each "count/seconds" pair. The
# default is TradersPost's documented limit; a sender that would pass it waits (the order stays pending).
TRADERSPOST_RATE_LIMITS = rate_limits(env.str("PINEOPS_TRADERSPOST_RATE_LIMITS", default="60/60,500/3600"))
# The hub is degraded (/healthz 503, one alert) when a root's market trades and no trade came for this long.
FEED_GAP_MINUTES = env.float("PINEOPS_FEED_GAP_MINUTES", default=10.0)
# An ML model trained longer ago than this is flagged on its admin page and alerted once (trading.modelcard).
MODEL_MAX_AGE_DAYS = env.float("PINEOPS_MODEL_MAX_AGE_DAYS", default=90.0)
# The market's clock (trading.marketdata.clock): "wall" in live trading, "data" for a replay (the demo),
# where the market's time is the time of the latest bar.
MARKET_CLOCK = env.str("PINEOPS_MARKET_CLOCK", default="data" if os.environ.get("PINEOPS_DEMO") == "1" else "wall"
                       ).strip().lower()
# Env override of the killswitch: true/1/yes (any case) blocks entries; "halt" blocks everything.
POLICY_KILLSWITCH = env.str("POLICY_KILLSWITCH", default="")
# Where alerts without a strategy (hub, heartbeats, process faults) go: a ${VAR} reference, like the
# strategies' own discord_webhook field; the URL itself stays in the environment.
DISCORD_SYSTEM_WEBHOOK = os.environ.get("DISCORD_SYSTEM_WEBHOOK", "${DISCORD_WEBHOOK_URL}")  # not env.str: it expands $

# --- Market data -----------------------------------------------------------------------------
# Databento's historical API for warmup: empty for Databento's own; https://host:port for a local
# stand-in (trading.sim.historical). A warmup download costing more than this (US$) needs --yes.
DATABENTO_HISTORICAL_GATEWAY = env.str("DATABENTO_HISTORICAL_GATEWAY", default="")
WARMUP_MAX_COST = env.float("PINEOPS_WARMUP_MAX_COST", default=5.0)

# --- Logging: one line per event; secrets are redacted by a filter on every handler ------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
PROGRAM_NAME = re.sub(r"[^A-Za-z0-9_.-]", "", os.environ.get("SUPERVISOR_PROCESS_NAME", ""))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "pineops.logging.RedactSecrets"}},
    # Under supervisord every line names its program (supervisord sets SUPERVISOR_PROCESS_NAME).
    "formatters": {"line": {"format": "%(asctime)s " + (f"[{PROGRAM_NAME}] " if PROGRAM_NAME else "")
                                      + "%(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # urllib3 logs request paths at DEBUG, and webhook paths carry secret tokens.
        "urllib3": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # one INFO line per failed login otherwise; lockouts are logged anyway
    },
}

# --- Processes (supervisord) -------------------------------------------------------------------
# The programs this container runs (web, hub, workers, celery, beat; default all), and the strategies
# its workers take (None: every enabled strategy). README "Scaling out".
ROLES = roles(os.environ.get("PINEOPS_ROLES"))
WORKER_STRATEGIES = worker_strategies(os.environ.get("PINEOPS_WORKER_STRATEGIES"))
# Celery beat runs once across every host: the beat holding this Redis lease ticks, any other waits.
BEAT_LOCK_SECONDS = env.int("PINEOPS_BEAT_LOCK_SECONDS", default=30)
# One worker per strategy across every host: its lock's lease in Redis. Worker programs run as standbys
# (supervisor.PROGRAM sets PINEOPS_WORKER_WAITS_FOR_LOCK): a second copy waits instead of exiting.
WORKER_LOCK_SECONDS = env.int("PINEOPS_WORKER_LOCK_SECONDS", default=30)
WORKER_WAITS_FOR_LOCK = env.bool("PINEOPS_WORKER_WAITS_FOR_LOCK", default=False)
# One hub per feed across every host: the hub holding this Redis lease subscribes and writes bars, any other
# waits (trading.marketdata.lease).
HUB_LOCK_SECONDS = env.int("PINEOPS_HUB_LOCK_SECONDS", default=30)
# Command of a strategy's worker program; {strategy} is replaced by its name.
WORKER_COMMAND = env.str("PINEOPS_WORKER_COMMAND",
                         default="%(ENV_PINEOPS_PYTHON)s manage.py runworker --strategy {strategy}")

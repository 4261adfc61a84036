"""Settings, all read from the environment (see README "Settings").

PAAS_MODE=production turns DEBUG off (no traceback ever reaches a browser)
and insists on a strong SECRET_KEY; the default, development, shows
tracebacks. Independently, the HTTPS-only settings (secure cookies, HSTS,
SSL redirect) follow PAAS_PANEL_URL: on when the panel is served over HTTPS,
off for the default plain http://127.0.0.1:8000, which they would break.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from paas.env import (
    env_bool,
    env_file,
    env_float,
    env_int,
    env_list,
    env_log_level,
    env_name,
    env_optional_path,
    env_path,
    env_str,
    env_subnet,
    secret_key,
)
from runtime_agent.host.private import private_dir
from runtime_agent.net.names import IFNAME_RE, IFNAME_RULE, NFT_TABLE_RE, NFT_TABLE_RULE

BASE_DIR = Path(__file__).resolve().parent.parent
MODE = env_str("PAAS_MODE", "development")
if MODE not in {"development", "production"}:
    raise ImproperlyConfigured(f"PAAS_MODE={MODE!r}: use development or production")
PRODUCTION = MODE == "production"

# Others may pass through the data dir but not list it: the agent's root may
# live in it, and a container's unprivileged uids must reach their rootfs
# there. Every root inside is private on its own (0700/0750).
DATA_DIR = private_dir(env_path("PAAS_DATA_DIR", BASE_DIR / "var"), 0o751)
UPLOAD_DIR = env_path("PAAS_UPLOAD_DIR", DATA_DIR / "uploads")
BUILD_DIR = env_path("PAAS_BUILD_DIR", DATA_DIR / "builds")

SECRET_KEY = secret_key("SECRET_KEY", DATA_DIR)
DEBUG = env_bool("DEBUG", not PRODUCTION)
PAAS_DOMAIN = env_str("PAAS_DOMAIN", "localhost")
PANEL_URL = env_str("PAAS_PANEL_URL", "http://127.0.0.1:8000")
_panel = urlsplit(PANEL_URL)
_panel_host = _panel.hostname or ""
if _panel.scheme not in {"http", "https"} or not _panel_host:
    raise ImproperlyConfigured(
        f"PAAS_PANEL_URL={PANEL_URL!r}: give the panel's address as http(s)://host[:port]"
    )
PANEL_HTTPS = _panel.scheme == "https"
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", sorted({"127.0.0.1", "localhost", _panel_host, f".{PAAS_DOMAIN}"})
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# ninja's package directory, found without importing it (see INSTALLED_APPS).
_NINJA_SPEC = importlib.util.find_spec("ninja")
assert _NINJA_SPEC is not None and _NINJA_SPEC.origin is not None, "django-ninja is a dependency"
_NINJA_DIR = Path(_NINJA_SPEC.origin).parent
# Neither daphne nor ninja is an installed app: as apps they would be imported
# by every process that sets Django up (the worker, the log follower and
# beat too), ~40 MiB each (daphne's app pulls in twisted and autobahn;
# ninja pydantic). daphne serves the web as a command of its own; ninja's
# vendored Swagger assets are found through TEMPLATES and STATICFILES_DIRS
# below, and paas/api/api.py renders its docs page from them. Only
# ``manage.py runserver`` wants daphne's app (its ASGI runserver).
_DAPHNE_APP = ["daphne"] if sys.argv[1:2] == ["runserver"] else []
INSTALLED_APPS = [
    *_DAPHNE_APP,
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "paas.core",
    "paas.accounts",
    "paas.applications",
    "paas.builds",
    "paas.hosts",
    "paas.router",
    "paas.logs",
    "paas.metrics",
    "paas.gitdeploy",
    "paas.front",
    "paas.api",
]

MIDDLEWARE = [
    "paas.core.api_urlconf.api_urlconf",  # first: see there
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "paas.urls"
ASGI_APPLICATION = "paas.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates", _NINJA_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "paas.front.context.platform",
            ],
        },
    },
]

# SQLite's default home is a directory of its own: the web (the service user)
# and the worker (root) both write it, and SQLite makes its -wal and -shm
# files beside the database.
_SQLITE_DEFAULT = DATA_DIR / "db" / "paas.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{_SQLITE_DEFAULT}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["NAME"] == str(_SQLITE_DEFAULT):
    private_dir(_SQLITE_DEFAULT.parent)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to one file: wait for the lock instead of
    # failing with "database is locked", and let readers run beside a writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory: the tests' Celery worker is another process.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# Sign-in throttling (paas/accounts/throttle.py): failures within the window
# per account (from anywhere) and per address (any account) before refusing.
PAAS_SIGNIN_WINDOW_S = env_int("PAAS_SIGNIN_WINDOW_S", 900, minimum=1)
PAAS_SIGNIN_MAX_PER_ACCOUNT = env_int("PAAS_SIGNIN_MAX_PER_ACCOUNT", 5, minimum=1)
PAAS_SIGNIN_MAX_PER_ADDRESS = env_int("PAAS_SIGNIN_MAX_PER_ADDRESS", 20, minimum=1)
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static", _NINJA_DIR / "static"]
STATIC_ROOT = private_dir(DATA_DIR / "static", 0o750)
# Serve straight from static/ while developing; collectstatic is for production.
WHITENOISE_USE_FINDERS = DEBUG

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60},
    },
    # Runtime log batches: pub/sub, so one batch crosses Redis once per web
    # process whatever the number of watchers, and nothing queues in Redis
    # for a slow one (the database keeps every line; see paas/logs).
    "logs": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("PAAS_TASK_TIME_LIMIT", 1800, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
# The worker's threads: at most PAAS_WORK_SLOTS builds and deploys at once
# (PAAS_BUILD_SLOTS of them builds), the rest (Procfile: --concurrency is one
# more than the work slots) always free for the control loops, whose queue is
# never paused: a lost host is noticed within its bound under any load
# (paas/core/work_slots.py). A task not routed here is long work ("celery").
PAAS_BUILD_SLOTS = env_int("PAAS_BUILD_SLOTS", 2, minimum=1)
PAAS_WORK_SLOTS = env_int("PAAS_WORK_SLOTS", PAAS_BUILD_SLOTS + 1, minimum=1)
if PAAS_WORK_SLOTS < PAAS_BUILD_SLOTS:
    raise ImproperlyConfigured(
        f"PAAS_WORK_SLOTS ({PAAS_WORK_SLOTS}) counts builds too: it must be at least "
        f"PAAS_BUILD_SLOTS ({PAAS_BUILD_SLOTS})"
    )
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Names, not kombu Queues: the router's process reads these settings too.
CELERY_TASK_QUEUES = {
    name: {"routing_key": name} for name in ("celery", "builds", "control")
}  # fmt: skip
CONTROL_TASKS = (
    "hosts.heartbeat", "hosts.push_router_sources", "deploy.observe", "deploy.reconcile",
    "deploy.redrive", "builds.redrive", "builds.fail_abandoned", "metrics.collect",
    "metrics.compact", "logs.enforce_retention",
)  # fmt: skip
CELERY_TASK_ROUTES = {
    "builds.run": {"queue": "builds"},
    **{name: {"queue": "control"} for name in CONTROL_TASKS},
}
# Redis redelivers an unacked task after this long; it must outlast the
# longest task or a healthy build would be handed to a second worker.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 60}
PAAS_HOUSEKEEPING_INTERVAL = env_int("PAAS_HOUSEKEEPING_INTERVAL", 600, minimum=10)
# How often the beat looks for work a dead worker or a lost broker queue
# abandoned: builds whose lease ran out, tasks Redis lost, deploys whose
# worker died (paas/hosts/resume.py).
PAAS_SWEEP_SECONDS = env_float("PAAS_SWEEP_SECONDS", 30.0, minimum=0.5)
CELERY_BEAT_SCHEDULE = {
    "fail-abandoned-builds": {"task": "builds.fail_abandoned", "schedule": PAAS_SWEEP_SECONDS},
    "build-housekeeping": {"task": "builds.housekeep", "schedule": PAAS_HOUSEKEEPING_INTERVAL},
    "log-retention": {"task": "logs.enforce_retention", "schedule": 300.0},
    "redrive-builds": {"task": "builds.redrive", "schedule": PAAS_SWEEP_SECONDS},
    "redrive-releases": {"task": "deploy.redrive", "schedule": PAAS_SWEEP_SECONDS},
}
# A build still queued (a release still pending) this long, whose task is no
# longer in the broker (Redis restarted, or a worker died as it took the
# message), is sent again (paas/core/redrive.py).
PAAS_REDRIVE_AFTER_S = env_float("PAAS_REDRIVE_AFTER_S", 60.0, minimum=0.0)
# A log follow over server-sent events ends (with an `end` event) after this.
PAAS_LOG_STREAM_MAX_S = env_float("PAAS_LOG_STREAM_MAX_S", 600.0, minimum=0.1)
# ... or after this many bytes of lines: daphne holds in memory what a slow
# client has not read yet, so this bounds what one follow can make it hold.
PAAS_LOG_STREAM_MAX_BYTES = env_int("PAAS_LOG_STREAM_MAX_BYTES", 8 * 1024 * 1024, minimum=4096)
# Live follows one user may hold open at once in one web process (each may
# hold up to PAAS_LOG_STREAM_MAX_BYTES there): one more is answered 429.
PAAS_LOG_STREAMS_PER_USER = env_int("PAAS_LOG_STREAMS_PER_USER", 10, minimum=1)
# ... and sends a comment line after this long without a line, so that a proxy
# in front does not take it for dead.
PAAS_LOG_STREAM_HEARTBEAT_S = env_float("PAAS_LOG_STREAM_HEARTBEAT_S", 15.0, minimum=0.05)

# Runtime logs (see paas/logs and the README's "Logs").
PAAS_LOG_RETENTION_LINES = env_int("PAAS_LOG_RETENTION_LINES", 100_000, minimum=0)
PAAS_LOG_RETENTION_DAYS = env_int("PAAS_LOG_RETENTION_DAYS", 7, minimum=0)
PAAS_LOG_REPLAY_LINES = env_int("PAAS_LOG_REPLAY_LINES", 500, minimum=0)
PAAS_LOG_CONSUMER_BUFFER = env_int("PAAS_LOG_CONSUMER_BUFFER", 10_000, minimum=100)
PAAS_LOG_ROUTER_ACCESS_LOG = str(env_optional_path("PAAS_LOG_ROUTER_ACCESS_LOG") or "")
PAAS_LOG_FOLLOW_REFRESH_S = env_float("PAAS_LOG_FOLLOW_REFRESH_S", 2.0, minimum=0.05)

# Source intake limits (the archive is untrusted input).
PAAS_MAX_UPLOAD_BYTES = env_int("PAAS_MAX_UPLOAD_BYTES", 200 * 1024 * 1024, minimum=1024)
PAAS_ARCHIVE_MAX_BYTES = env_int("PAAS_ARCHIVE_MAX_BYTES", 1024**3, minimum=1024)
PAAS_ARCHIVE_MAX_FILES = env_int("PAAS_ARCHIVE_MAX_FILES", 20_000, minimum=1)
PAAS_ARCHIVE_MAX_RATIO = env_int("PAAS_ARCHIVE_MAX_RATIO", 200, minimum=1)
# A build whose worker has not renewed its lease for this long is failed.
PAAS_BUILD_LEASE_SECONDS = env_int("PAAS_BUILD_LEASE_SECONDS", 120, minimum=5)
# A build's stored log: past either cap one "log truncated" line, then nothing.
PAAS_BUILD_LOG_MAX_LINES = env_int("PAAS_BUILD_LOG_MAX_LINES", 20_000, minimum=100)
PAAS_BUILD_LOG_MAX_BYTES = env_int("PAAS_BUILD_LOG_MAX_BYTES", 5 * 1024 * 1024, minimum=10_000)

# The registry images are pushed to. `manage.py setup_registry` (scripts/up)
# writes the platform's own under $PAAS_DATA_DIR/registry; any OCI registry
# can be named instead with PAAS_REGISTRY and its credentials.
_REGISTRY_SETUP = DATA_DIR / "registry" / "setup.json"
# Readable by root only (it holds the push password): the web and beat run as
# the service user and never push, so they go without it.
_registry = json.loads(_REGISTRY_SETUP.read_text()) if os.access(_REGISTRY_SETUP, os.R_OK) else {}
PAAS_REGISTRY = env_str("PAAS_REGISTRY", _registry.get("host", "127.0.0.1:5000"))
PAAS_REGISTRY_USER = env_str("PAAS_REGISTRY_USER", _registry.get("username", ""))
PAAS_REGISTRY_PASSWORD = env_str("PAAS_REGISTRY_PASSWORD", _registry.get("password", ""))
PAAS_REGISTRY_CA = str(env_optional_path("PAAS_REGISTRY_CA") or _registry.get("ca_file", ""))
PAAS_REGISTRY_SCHEME = env_str("PAAS_REGISTRY_SCHEME", "https")
# The registry's own config: its garbage collection runs with it (on the
# registry's host); empty skips the collection.
PAAS_REGISTRY_CONFIG = str(
    env_optional_path("PAAS_REGISTRY_CONFIG") or _registry.get("config_file", "")
)
PAAS_REGISTRY_BINARY = env_str("PAAS_REGISTRY_BINARY", "docker-registry")
# The key (and its certificate, the registry's rootcertbundle) that signs the
# registry's bearer tokens (auth: token; paas/builds/registry_tokens.py). Set:
# agents get a pull token for one repository per create, and the worker mints
# its own push tokens; unset: the registry takes PAAS_REGISTRY_USER/PASSWORD.
PAAS_REGISTRY_TOKEN_KEY = str(
    env_optional_path("PAAS_REGISTRY_TOKEN_KEY") or _registry.get("token_key", "")
)
PAAS_REGISTRY_TOKEN_CERT = str(
    env_optional_path("PAAS_REGISTRY_TOKEN_CERT") or _registry.get("token_cert", "")
)
if bool(PAAS_REGISTRY_TOKEN_KEY) != bool(PAAS_REGISTRY_TOKEN_CERT):
    raise ImproperlyConfigured("PAAS_REGISTRY_TOKEN_KEY and PAAS_REGISTRY_TOKEN_CERT go together")
# Registries other than the platform's that apps may deploy images from
# (host[:port], comma-separated; `*`: any). Empty: none. The worker and the
# agents connect to them, so list only what they should reach.
PAAS_DEPLOY_REGISTRIES = [
    r.strip().lower() for r in env_str("PAAS_DEPLOY_REGISTRIES", "").split(",") if r.strip()
]
# How long a pull token an agent gets lives: long enough for the largest pull.
PAAS_REGISTRY_TOKEN_TTL_S = env_int("PAAS_REGISTRY_TOKEN_TTL_S", 900, minimum=60)
if PAAS_REGISTRY_SCHEME not in {"http", "https"}:
    raise ImproperlyConfigured(f"PAAS_REGISTRY_SCHEME={PAAS_REGISTRY_SCHEME!r}: http or https")

# The builder (see paas/builds/engine).
PAAS_BUILD_CACHE_DIR = env_path("PAAS_BUILD_CACHE_DIR", DATA_DIR / "build-cache")
PAAS_STACK_NAME = env_str("PAAS_STACK_NAME", "bookworm")
PAAS_STACK_MIRROR = env_str("PAAS_STACK_MIRROR", "http://deb.debian.org/debian")
PAAS_STACK_PACKAGES = env_list(
    "PAAS_STACK_PACKAGES",
    ["python3", "python3-venv", "python3-pip", "nodejs", "npm", "ca-certificates"],
)
PAAS_BUILD_MEMORY_BYTES = env_int("PAAS_BUILD_MEMORY_BYTES", 2 * 1024**3, minimum=64 * 1024**2)
PAAS_BUILD_CPUS = env_float("PAAS_BUILD_CPUS", 1.0, minimum=0.1)
PAAS_BUILD_PIDS = env_int("PAAS_BUILD_PIDS", 1024, minimum=16)
PAAS_BUILD_STEP_TIMEOUT = env_int("PAAS_BUILD_STEP_TIMEOUT", 900, minimum=5)
PAAS_BUILD_BRIDGE = env_name("PAAS_BUILD_BRIDGE", "paasbuild0", IFNAME_RE, IFNAME_RULE)
PAAS_BUILD_SUBNET = env_subnet("PAAS_BUILD_SUBNET", "10.89.0.0/24")
PAAS_BUILD_NFT_TABLE = env_name("PAAS_BUILD_NFT_TABLE", "paas_build", NFT_TABLE_RE, NFT_TABLE_RULE)
PAAS_PIP_INDEX_URL = env_str("PAAS_PIP_INDEX_URL", "")
PAAS_NPM_REGISTRY_URL = env_str("PAAS_NPM_REGISTRY_URL", "")
PAAS_KEEP_IMAGES = env_int("PAAS_KEEP_IMAGES", 10, minimum=0)
# Dependency layers and pip/npm download caches are evicted, least recently
# used first, down to this size (the stack and pulled base images are not
# counted: they are needed by every build).
PAAS_BUILD_CACHE_MAX_BYTES = env_int("PAAS_BUILD_CACHE_MAX_BYTES", 20 * 1024**3, minimum=0)
# Uploaded archives of finished builds are deleted after this many days (0 keeps them).
PAAS_UPLOAD_RETENTION_DAYS = env_int("PAAS_UPLOAD_RETENTION_DAYS", 7, minimum=0)
# What build steps trust and go through to reach package indexes: the host's
# CA bundle (mounted read-only; "none" mounts none) and proxies (default: the
# host's HTTP_PROXY, HTTPS_PROXY, NO_PROXY, upper- or lower-case).
_HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PAAS_BUILD_CA_BUNDLE = env_file(
    "PAAS_BUILD_CA_BUNDLE",
    _HOST_CA_BUNDLE if Path(_HOST_CA_BUNDLE).is_file() else "",
    none_word="none",
)


def _build_proxy(name: str) -> str:
    """PAAS_BUILD_<name>, else the host's own; "none" gives builds none even
    when the host has one (an empty variable means the default)."""
    host = os.environ.get(name) or os.environ.get(name.lower()) or ""
    value = env_str(f"PAAS_BUILD_{name}", host)
    return "" if value.lower() == "none" else value


PAAS_BUILD_HTTP_PROXY = _build_proxy("HTTP_PROXY")
PAAS_BUILD_HTTPS_PROXY = _build_proxy("HTTPS_PROXY")
PAAS_BUILD_NO_PROXY = _build_proxy("NO_PROXY")
# Repositories in the platform registry (``repo`` or ``repo:tag``) any team's
# Dockerfile may start FROM, besides the stack and the team's own apps.
PAAS_BUILD_ALLOWED_IMAGES = env_list("PAAS_BUILD_ALLOWED_IMAGES", [])
# Addresses build steps may reach although they are the host's or local
# (a proxy or private package index): comma-separated IPv4 networks.
PAAS_BUILD_ALLOWED_NETWORKS = env_list("PAAS_BUILD_ALLOWED_NETWORKS", [])
try:
    PAAS_BUILD_ALLOWED_NETWORKS = [
        str(ipaddress.IPv4Network(n)) for n in PAAS_BUILD_ALLOWED_NETWORKS
    ]
except ValueError as _exc:
    raise ImproperlyConfigured(f"PAAS_BUILD_ALLOWED_NETWORKS: {_exc} (IPv4 networks)") from None

# The router: the platform's own nginx (see paas/router and README "Routing").
PAAS_ROUTER_DIR = env_path("PAAS_ROUTER_DIR", DATA_DIR / "router")
PAAS_ROUTER_PORT = env_int("PAAS_ROUTER_PORT", 8080, minimum=1)
PAAS_ROUTER_HTTPS_PORT = env_int("PAAS_ROUTER_HTTPS_PORT", 8443, minimum=1)
PAAS_ROUTER_LISTEN = env_list("PAAS_ROUTER_LISTEN", ["127.0.0.1"])
PAAS_ROUTER_NGINX = env_str("PAAS_ROUTER_NGINX", "/usr/sbin/nginx")
PAAS_ROUTER_WORKERS = env_int("PAAS_ROUTER_WORKERS", 0, minimum=0)  # 0: one per CPU
PAAS_ROUTER_MAX_BODY_MB = env_int("PAAS_ROUTER_MAX_BODY_MB", 100, minimum=0)
PAAS_ROUTER_READ_TIMEOUT = env_int("PAAS_ROUTER_READ_TIMEOUT", 60, minimum=1)
PAAS_ROUTER_RELOAD_TIMEOUT = env_float("PAAS_ROUTER_RELOAD_TIMEOUT", 10.0, minimum=0.5)
for _port_name in ("PAAS_ROUTER_PORT", "PAAS_ROUTER_HTTPS_PORT"):
    if globals()[_port_name] > 65535:
        raise ImproperlyConfigured(f"{_port_name}={globals()[_port_name]} is not a TCP port")
for _address in PAAS_ROUTER_LISTEN:
    try:
        ipaddress.ip_address(_address)
    except ValueError:
        raise ImproperlyConfigured(
            f"PAAS_ROUTER_LISTEN: {_address!r} is not an IP address (e.g. 127.0.0.1,::1)"
        ) from None

# Deploys (see README "Deploying").
PAAS_HEALTH_PATH = env_str("PAAS_HEALTH_PATH", "/")
PAAS_HEALTH_TIMEOUT_S = env_float("PAAS_HEALTH_TIMEOUT_S", 60.0, minimum=0.5)
PAAS_RELEASE_TIMEOUT_S = env_float("PAAS_RELEASE_TIMEOUT_S", 600.0, minimum=1.0)
# How long `paas run -- CMD` may run before it is stopped (the request waits).
PAAS_RUN_TIMEOUT_S = env_float("PAAS_RUN_TIMEOUT_S", 300.0, minimum=1.0)
PAAS_DRAIN_SECONDS = env_float("PAAS_DRAIN_SECONDS", 10.0, minimum=0.0)
# How long a stopped instance has between SIGTERM and SIGKILL (the agent waits it out).
PAAS_STOP_GRACE_S = env_float("PAAS_STOP_GRACE_S", 10.0, minimum=0.0)
PAAS_HOST_TIMEOUT_S = env_float("PAAS_HOST_TIMEOUT_S", 30.0, minimum=1.0)
PAAS_HEARTBEAT_SECONDS = env_float("PAAS_HEARTBEAT_SECONDS", 10.0, minimum=0.5)
PAAS_RECONCILE_SECONDS = env_float("PAAS_RECONCILE_SECONDS", 30.0, minimum=1.0)
PAAS_OBSERVE_SECONDS = env_float("PAAS_OBSERVE_SECONDS", 2.0, minimum=0.2)
PAAS_DEPLOY_LOCK_LEASE_S = env_float("PAAS_DEPLOY_LOCK_LEASE_S", 20.0, minimum=1.0)
# A deploy task that loses the database retries 1, 2, 4 ... 30 s later, this
# many times (10: about three minutes); after that, the deploy sweep
# (paas/hosts/resume.py) resumes the release once the database is back.
PAAS_DEPLOY_DB_RETRIES = env_int("PAAS_DEPLOY_DB_RETRIES", 10, minimum=0)
PAAS_JOIN_TOKEN_TTL_S = env_int("PAAS_JOIN_TOKEN_TTL_S", 3600, minimum=60)
PAAS_INSTANCE_PORT = env_int("PAAS_INSTANCE_PORT", 8080, minimum=1)
PAAS_TCP_PORTS_FIRST = env_int("PAAS_TCP_PORTS_FIRST", 20000, minimum=1024)
PAAS_TCP_PORTS_LAST = env_int("PAAS_TCP_PORTS_LAST", 29999, minimum=1024)
# Web instances on hosts across the network are published on these ports of
# their host's address for the router (paas/hosts/upstreams.py). The ranges
# may overlap: a host's ports are allocated from what neither kind holds.
PAAS_ROUTE_PORTS_FIRST = env_int("PAAS_ROUTE_PORTS_FIRST", 30000, minimum=1024)
PAAS_ROUTE_PORTS_LAST = env_int("PAAS_ROUTE_PORTS_LAST", 39999, minimum=1024)
# The addresses the router and the health check reach those ports from, given
# to a host when it joins (its agent answers route ports for them alone).
# Empty: the address this machine reaches the joining host from
# (paas/hosts/route_sources.py); set it when that is not so (a NAT, a router
# on other machines): comma-separated IPv4 networks.
PAAS_ROUTER_SOURCES = env_list("PAAS_ROUTER_SOURCES", [])
try:
    PAAS_ROUTER_SOURCES = [str(ipaddress.IPv4Network(n)) for n in PAAS_ROUTER_SOURCES]
except ValueError as _exc:
    raise ImproperlyConfigured(f"PAAS_ROUTER_SOURCES: {_exc} (IPv4 networks)") from None
# A host whose push of router sources failed is tried again at a later
# heartbeat: 2, 4, 8 ... heartbeats after the failure, at most this long.
PAAS_ROUTER_SOURCES_BACKOFF_MAX_S = env_float(
    "PAAS_ROUTER_SOURCES_BACKOFF_MAX_S", 600.0, minimum=1.0
)
CELERY_BEAT_SCHEDULE["hosts-heartbeat"] = {
    "task": "hosts.heartbeat",
    "schedule": PAAS_HEARTBEAT_SECONDS,
}
CELERY_BEAT_SCHEDULE["deploy-reconcile"] = {
    "task": "deploy.reconcile",
    "schedule": PAAS_RECONCILE_SECONDS,
}
# Frequent and cheap (one list per host); a poll that waited behind a long
# task in the queue is dropped, the next one is as good.
CELERY_BEAT_SCHEDULE["deploy-observe"] = {
    "task": "deploy.observe",
    "schedule": PAAS_OBSERVE_SECONDS,
    "options": {"expires": PAAS_OBSERVE_SECONDS * 2},
}

# Metrics (see README "Metrics"): CPU and memory per instance.
PAAS_METRICS_INTERVAL_S = env_int("PAAS_METRICS_INTERVAL_S", 10, minimum=1)
PAAS_METRICS_COARSE_S = env_int("PAAS_METRICS_COARSE_S", 300, minimum=60)
PAAS_METRICS_FINE_RETENTION_S = env_int("PAAS_METRICS_FINE_RETENTION_S", 3600, minimum=600)
PAAS_METRICS_RETENTION_HOURS = env_int("PAAS_METRICS_RETENTION_HOURS", 24, minimum=1)
if PAAS_METRICS_COARSE_S % PAAS_METRICS_INTERVAL_S:
    raise ImproperlyConfigured(
        "PAAS_METRICS_COARSE_S must be a multiple of PAAS_METRICS_INTERVAL_S "
        f"({PAAS_METRICS_COARSE_S} and {PAAS_METRICS_INTERVAL_S})"
    )
# A collection that waited for a worker longer than one interval is stale:
# the next one is due, so it expires rather than piling up behind builds.
CELERY_BEAT_SCHEDULE["metrics-collect"] = {
    "task": "metrics.collect",
    "schedule": float(PAAS_METRICS_INTERVAL_S),
    "options": {"expires": float(PAAS_METRICS_INTERVAL_S)},
}
CELERY_BEAT_SCHEDULE["metrics-compact"] = {"task": "metrics.compact", "schedule": 60.0}
# Deploying from git (see paas/gitdeploy and README "git push and webhooks").
# One bare repository per app lives here, named from the app's id.
PAAS_GIT_DIR = env_path("PAAS_GIT_DIR", DATA_DIR / "git")
# How long a `git push` waits for its build and rollout before it gives up
# (the deploy goes on; the push then says where to watch it).
PAAS_GIT_PUSH_TIMEOUT_S = env_float("PAAS_GIT_PUSH_TIMEOUT_S", 1800.0, minimum=5.0)
# A push that shows nothing for this long gets a keepalive packet (proxies
# close connections that stay silent, and a dependency install can be long).
PAAS_GIT_KEEPALIVE_S = env_float("PAAS_GIT_KEEPALIVE_S", 15.0, minimum=0.1)
# The CAs trusted when a webhook fetches an app's repository over https.
PAAS_GIT_FETCH_CA_BUNDLE = env_file(
    "PAAS_GIT_FETCH_CA_BUNDLE", _HOST_CA_BUNDLE if Path(_HOST_CA_BUNDLE).is_file() else ""
)
PAAS_GIT_FETCH_TIMEOUT_S = env_float("PAAS_GIT_FETCH_TIMEOUT_S", 300.0, minimum=5.0)
# A webhook's fetch never goes to a loopback, private, link-local or other
# non-public address (a tenant's repository URL must not reach the
# platform's own network) unless it is in one of these networks.
PAAS_GIT_FETCH_ALLOWED_NETWORKS = env_list("PAAS_GIT_FETCH_ALLOWED_NETWORKS", [])
try:
    PAAS_GIT_FETCH_ALLOWED_NETWORKS = [
        str(ipaddress.ip_network(n)) for n in PAAS_GIT_FETCH_ALLOWED_NETWORKS
    ]
except ValueError as _exc:
    raise ImproperlyConfigured(f"PAAS_GIT_FETCH_ALLOWED_NETWORKS: {_exc}") from None

FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the upload script reads it for XHR posts
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PANEL_HTTPS:
    # Only when the panel really is served over HTTPS: over plain HTTP a
    # secure cookie is never sent back and the redirect leads nowhere.
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
if PRODUCTION and (SECRET_KEY.startswith("django-insecure") or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured("SECRET_KEY is too weak for production")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_log_level("LOG_LEVEL")},
}

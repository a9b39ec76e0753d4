"""The environment checked once at start: one line per wrong value, naming the variable and the forms
it accepts. Settings refuse to load with these lines (ImproperlyConfigured); `manage.py` prints them
without a traceback. Values are never echoed for variables that may hold a secret.
"""
from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

BOOLEAN = {"true", "false", "1", "0", "yes", "no", "on", "off", ""}
BOOLEANS = ("DEBUG", "PINEOPS_START_REDIS", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "PINEOPS_WORKER_WAITS_FOR_LOCK")
FLAGS = ("PINEOPS_ALLOW_ROOT", "PINEOPS_DEMO", "PINEOPS_LOAD_DEMO")  # 0 or 1, as the shell scripts test them
COUNTS = {"PINEOPS_WEB_WORKERS": 1, "PINEOPS_WAIT_SECONDS": 0, "SECURE_HSTS_SECONDS": 0,
          "PINEOPS_CLAIM_LEASE_SECONDS": 1, "PINEOPS_BEAT_LOCK_SECONDS": 3,
          "PINEOPS_WORKER_LOCK_SECONDS": 3, "PINEOPS_HUB_LOCK_SECONDS": 3,
          "PINEOPS_DB_IDLE_TRANSACTION_SECONDS": 1}
KILLSWITCH = {"", "true", "1", "yes", "on", "entries", "false", "0", "no", "off", "halt", "flatten"}
MARKET_CLOCKS = {"wall", "data"}
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
DATABASE_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql", "psql"}
REDIS_SCHEMES = {"redis", "rediss", "unix"}


def _port_ok(value) -> bool:
    return value is not None and 0 < value < 65536


def _url_problem(name: str, text: str, schemes: set[str], example: str, *, needs_host: bool = True) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return f"{name}: not a URL with a valid port; use {example}"
    if parts.scheme not in schemes:
        return f"{name}: scheme {parts.scheme or '(none)'!r} is not one of {', '.join(sorted(schemes))}; use {example}"
    if needs_host and parts.scheme not in ("sqlite", "unix") and not parts.hostname:
        return f"{name}: no host; use {example}"
    if port is not None and not _port_ok(port):
        return f"{name}: port {port} is outside 1-65535; use {example}"
    if parts.scheme == "sqlite" and not parts.path.strip("/"):
        return f"{name}: no database file; use {example}"
    return ""


def _host_port_problem(name: str, text: str, example: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not _port_ok(int(port)):
        return f"{name}: {text!r} is not host:port with a port in 1-65535; use {example}"
    return ""


# The programs of a container (supervisord.conf): the same image runs any set of them (README "Scaling out").
ROLES = ("web", "hub", "workers", "celery", "beat")
ROLES_EXAMPLE = "a comma list of web, hub, workers, celery, beat (default: all of them)"
STRATEGY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # as Strategy.name is validated
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # no ':' (lock and claim tokens are host:pid:start)


def roles(text: str | None) -> tuple[str, ...]:
    """The roles named in PINEOPS_ROLES, in the canonical order; unset or empty: every role."""
    names = [part.strip().lower() for part in (text or "").split(",")]
    if not any(names):
        return ROLES
    wrong = [n for n in names if n not in ROLES]
    if wrong:
        raise ValueError(f"{', '.join(repr(w[:20]) for w in wrong)} {'is not a role' if len(wrong) == 1 else 'are not roles'}")
    return tuple(r for r in ROLES if r in names)


def worker_strategies(text: str | None) -> tuple[str, ...] | None:
    """The strategies named in PINEOPS_WORKER_STRATEGIES; None (unset or empty): every enabled strategy."""
    names = [part.strip() for part in (text or "").split(",")]
    if not any(names):
        return None
    wrong = [n for n in names if not STRATEGY_NAME.match(n)]
    if wrong:
        raise ValueError(f"{', '.join(repr(w[:40]) for w in wrong)}: not a strategy name")
    return tuple(sorted(set(names)))


RATE_LIMITS_EXAMPLE = "60/60,500/3600 (60 orders a minute and 500 an hour, TradersPost's limits)"


def rate_limits(text: str) -> tuple[tuple[int, float], ...]:
    """`count/seconds` pairs, comma-separated: at most `count` orders to one webhook in any `seconds`."""
    limits = []
    for part in text.split(","):
        count, sep, window = part.strip().partition("/")
        try:
            pair = (int(count), float(window))
        except ValueError:
            pair = (0, math.nan)
        if not sep or pair[0] < 1 or not (math.isfinite(pair[1]) and pair[1] > 0):
            raise ValueError(f"{part.strip()[:20]!r} is not count/seconds with a count of at least 1 and seconds > 0")
        limits.append(pair)
    return tuple(limits)


def environment_problems(environ) -> list[str]:
    """Every wrong value in `environ`, one line each."""
    problems = []
    get = lambda name: environ.get(name)  # noqa: E731
    if get("DATABASE_URL"):
        problems.append(_url_problem("DATABASE_URL", get("DATABASE_URL"), DATABASE_SCHEMES,
                                     "sqlite:////data/pineops.sqlite3 or postgres://user:password@host:5432/pineops"))
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        if get(name):
            problems.append(_url_problem(name, get(name), REDIS_SCHEMES, "redis://127.0.0.1:6379/0"))
    for name, example in (("DATABENTO_GATEWAY", "127.0.0.1:13000"), ("PINEOPS_WEB_BIND", "0.0.0.0:8000")):
        if get(name):
            problems.append(_host_port_problem(name, get(name), example))
    for name in BOOLEANS:
        if get(name) is not None and get(name).strip().lower() not in BOOLEAN:
            problems.append(f"{name}: {get(name)[:20]!r} is not a boolean; use true or false (1/0, yes/no, on/off)")
    for name in FLAGS:
        if get(name) is not None and get(name).strip() not in ("", "0", "1"):
            problems.append(f"{name}: {get(name)[:20]!r} is not a flag; use 1 (on) or 0 (off)")
    for name, least in COUNTS.items():
        if get(name) is not None and (not get(name).strip().isdigit() or int(get(name)) < least):
            problems.append(f"{name}: {get(name)[:20]!r} is not a whole number of at least {least}")
    for name, hint in (("PINEOPS_DEMO_SPEED", "1 real time, 1200: an hour every 3 s"),
                       ("PINEOPS_FEED_GAP_MINUTES", "minutes without a trade while the market is open, e.g. 10")):
        if get(name) is not None:
            try:
                number = float(get(name))
            except ValueError:
                number = math.nan
            if not (math.isfinite(number) and number > 0):
                problems.append(f"{name}: {get(name)[:20]!r} is not a positive number ({hint})")
    if get("POLICY_KILLSWITCH") is not None and get("POLICY_KILLSWITCH").strip().lower() not in KILLSWITCH:
        problems.append(f"POLICY_KILLSWITCH: {get('POLICY_KILLSWITCH')[:20]!r} is not a killswitch mode; use empty or "
                        "false (the admin decides), true/1/yes/entries (block entries), flatten, or halt")
    if get("PINEOPS_TRADERSPOST_RATE_LIMITS") is not None:
        try:
            rate_limits(get("PINEOPS_TRADERSPOST_RATE_LIMITS"))
        except ValueError as exc:
            problems.append(f"PINEOPS_TRADERSPOST_RATE_LIMITS: {exc}; use {RATE_LIMITS_EXAMPLE}")
    if get("PINEOPS_MARKET_CLOCK") is not None and get("PINEOPS_MARKET_CLOCK").strip().lower() not in MARKET_CLOCKS:
        problems.append(f"PINEOPS_MARKET_CLOCK: {get('PINEOPS_MARKET_CLOCK')[:20]!r} is not a market clock; use wall "
                        "(live trading: the market's time is now) or data (a replay: the time of the latest bar)")
    if get("PINEOPS_ROLES") is not None:
        try:
            roles(get("PINEOPS_ROLES"))
        except ValueError as exc:
            problems.append(f"PINEOPS_ROLES: {exc}; use {ROLES_EXAMPLE}")
    if get("PINEOPS_WORKER_STRATEGIES") is not None:
        try:
            worker_strategies(get("PINEOPS_WORKER_STRATEGIES"))
        except ValueError as exc:
            problems.append(f"PINEOPS_WORKER_STRATEGIES: {exc}; use strategy names separated by commas, e.g. "
                            "ibs_a,ibs_b (default: every enabled strategy)")
    if get("PINEOPS_HOST_NAME") and not HOST_NAME.match(get("PINEOPS_HOST_NAME")):
        problems.append(f"PINEOPS_HOST_NAME: {get('PINEOPS_HOST_NAME')[:40]!r} is not a host name; use letters, digits, "
                        "'.', '-' and '_' (no ':'), unique per host (default: the system's host name)")
    if get("LOG_LEVEL") is not None and get("LOG_LEVEL").strip().upper() not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL: {get('LOG_LEVEL')[:20]!r} is not one of {', '.join(sorted(LOG_LEVELS))}")
    return [p for p in problems if p]

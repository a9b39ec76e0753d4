"""What the bench scripts share: a throw-away appliance to measure (environment, PostgreSQL database,
Redis key prefix) and the machine's load beside the figures.

Nothing here imports Django at import time, and nothing writes outside what it created itself.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def throwaway_prefix(name: str = "pineops-bench") -> str:
    """A Redis key prefix no other run uses: `<name>-<random>`."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


def create_pg_database(server_url: str) -> tuple[str, str]:
    """Create an empty pineops_bench_<random> database on the server of `server_url` (through its
    maintenance database 'postgres', so the database named in the URL need not exist); returns
    (its name, its DATABASE_URL)."""
    import psycopg

    name = f"pineops_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def drop_pg_database(server_url: str, name: str) -> None:
    """Drop a database made by create_pg_database, even with connections still open to it."""
    import psycopg

    with psycopg.connect(server_url, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_environment(runtime_dir: Path, database_url: str, redis_prefix: str, **overrides: str) -> None:
    """Point this process's appliance (before django.setup) at its own runtime dir, database and
    Redis prefix, development settings with DEBUG off as in production (DEBUG keeps every SQL statement in
    memory and wraps each cursor call) and no env file; `overrides` are further variables."""
    # Set, not setdefault: an inherited DATABASE_URL (say the CI database) must never be written into.
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "pineops.settings",
        "PINEOPS_ENV_FILE": "/dev/null",
        "PINEOPS_ENV": "development",
        "DEBUG": "false",
        "RUNTIME_DIR": str(runtime_dir),
        "DATABASE_URL": database_url,
        "REDIS_PREFIX": redis_prefix,
        **overrides,
    })


def migrate_and_load_demo() -> None:
    """Migrate the (empty) database and load the demo configuration, their output discarded."""
    from io import StringIO

    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("load_demo", stdout=StringIO(), stderr=StringIO())


def delete_keys(prefix: str) -> int:
    """Delete every Redis key starting with `prefix`; returns how many there were."""
    from trading.redis_client import get_redis

    client = get_redis()
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    return len(keys)


def load_average() -> float:
    """The machine's load average over the last minute, printed beside the figures."""
    return os.getloadavg()[0]

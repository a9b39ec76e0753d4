"""Wait until the database and/or Redis answer (used by the entrypoint before migrating)."""
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection


class Command(BaseCommand):
    help = "Wait for the database and/or Redis to accept connections."

    def add_arguments(self, parser):
        parser.add_argument("--database", action="store_true")
        parser.add_argument("--redis", action="store_true")
        parser.add_argument("--timeout", type=float, default=60)

    def handle(self, *args, database=False, redis=False, timeout=60, **options):
        deadline = time.monotonic() + timeout
        for name, probe in (("database", self.database_up), ("redis", self.redis_up)):
            if not {"database": database, "redis": redis}[name]:
                continue
            while True:
                error = probe()
                if error is None:
                    break
                if time.monotonic() > deadline:
                    raise CommandError(f"{name} not reachable after {timeout:.0f} s: {error}")
                time.sleep(1)

    @staticmethod
    def database_up():
        try:
            connection.ensure_connection()
            return None
        except Exception as exc:  # noqa: BLE001
            connection.close()
            return exc.__class__.__name__

    @staticmethod
    def redis_up():
        from trading.redis_client import get_redis

        try:
            get_redis().ping()
            return None
        except Exception as exc:  # noqa: BLE001
            return exc.__class__.__name__

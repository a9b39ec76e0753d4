"""Print, as shell `export` lines, what supervisord needs to know from the settings."""
import shlex
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print RUNTIME_DIR and the Redis location as shell exports (for deploy/entrypoint.sh)."

    def handle(self, *args, **options):
        redis = urlsplit(settings.REDIS_URL)
        values = {
            "RUNTIME_DIR": str(settings.RUNTIME_DIR),
            "PINEOPS_REDIS_HOST": redis.hostname or "127.0.0.1",
            "PINEOPS_REDIS_PORT": str(redis.port or 6379),
        }
        for name, value in values.items():
            self.stdout.write(f"export {name}={shlex.quote(value)}")

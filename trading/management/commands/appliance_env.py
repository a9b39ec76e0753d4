"""Print, as shell `export` lines, what supervisord needs to know from the settings and .env."""
import os
import shlex
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand


def _port(url_or_hostport: str) -> str:
    """The port of a URL or host:port ('0' when there is none)."""
    text = url_or_hostport if "://" in url_or_hostport else f"//{url_or_hostport}"
    try:
        return str(urlsplit(text).port or 0)
    except ValueError:
        return "0"


def _flag(value: bool) -> str:
    return "true" if value else "false"


class Command(BaseCommand):
    help = ("Print RUNTIME_DIR, the Redis location, the roles and which programs to start as shell exports "
            "(deploy/entrypoint.sh).")

    def handle(self, *args, **options):
        redis = urlsplit(settings.REDIS_URL)
        demo = os.environ.get("PINEOPS_DEMO", "0") == "1"
        roles = settings.ROLES
        values = {
            "RUNTIME_DIR": str(settings.RUNTIME_DIR),
            # The roles of this container (PINEOPS_ROLES, checked by pineops.envcheck): each switches its
            # programs in supervisord.conf (autostart); Redis follows REDIS_URL, the demo stand-ins the demo.
            "PINEOPS_ROLES": ",".join(roles),
            "PINEOPS_START_WEB": _flag("web" in roles),
            "PINEOPS_START_WORKERS": _flag("workers" in roles),
            "PINEOPS_START_CELERY": _flag("celery" in roles),
            "PINEOPS_START_BEAT": _flag("beat" in roles),
            "PINEOPS_REDIS_HOST": redis.hostname or "127.0.0.1",
            "PINEOPS_REDIS_PORT": str(redis.port or 6379),
            # The hub needs its role and a Databento key; without the key it is not started (the entrypoint
            # says so).
            "PINEOPS_START_HUB": _flag("hub" in roles and bool(os.environ.get("DATABENTO_API_KEY", "").strip())),
            # Demo only: the local Databento gateway and the TradersPost/Discord stand-ins listen
            # where .env says those services are (all on 127.0.0.1).
            "PINEOPS_DEMO": "1" if demo else "0",
            "PINEOPS_DEMO_SERVICES": _flag(demo),
            "PINEOPS_DEMO_MARKET": str(settings.RUNTIME_DIR / "demo-market" / "live"),
            "PINEOPS_DEMO_SPEED": os.environ.get("PINEOPS_DEMO_SPEED", "1200"),
            "PINEOPS_DEMO_GATEWAY_PORT": _port(os.environ.get("DATABENTO_GATEWAY", "")),
            "PINEOPS_DEMO_TRADERSPOST_PORT": _port(os.environ.get("TRADERSPOST_IBS_A_WEBHOOK", "")),
            "PINEOPS_DEMO_DISCORD_PORT": _port(os.environ.get("DISCORD_WEBHOOK_URL", "")),
        }
        for name, value in values.items():
            self.stdout.write(f"export {name}={shlex.quote(value)}")

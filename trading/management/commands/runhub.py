"""`manage.py runhub`: the market-data hub process (Databento Live → bars → Redis Streams)."""
import signal

from django.core.management.base import BaseCommand, CommandError

from trading.config import ConfigError
from trading.marketdata.service import HubService, NothingToSubscribe


class Command(BaseCommand):
    help = "Run the market-data hub: Databento Live trades → 1m/1h/1d bars in Redis Streams."
    # Django's system checks ran in `manage.py boot` before supervisord started this process (and run in
    # `manage.py check`); here they would import the admin and the URL conf for nothing (issue 19).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")

    def handle(self, *args, heartbeat=5.0, **options):
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        try:
            service = HubService(heartbeat=heartbeat, stopping=lambda: bool(stopping))
        except (ConfigError, NothingToSubscribe) as exc:
            raise CommandError(str(exc)) from None
        service.run()

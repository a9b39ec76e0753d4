"""Keep supervisord's worker programs equal to the enabled strategies in the database."""
import logging
import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from trading import supervisor

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Render worker programs from the database; with --watch, apply changes to supervisord as they happen."
    # Django's system checks ran in `manage.py boot` before supervisord started this process (and run in
    # `manage.py check`); here they would import the admin and the URL conf for nothing (issue 19).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--watch", action="store_true", help="keep running, polling the database")
        parser.add_argument("--interval", type=float, default=3.0, help="seconds between polls")

    def handle(self, *args, watch=False, interval=3.0, **options):
        if not watch:
            changed = supervisor.write_config(supervisor.render(supervisor.enabled_strategy_names()))
            self.stdout.write(f"{supervisor.config_path()} {'written' if changed else 'unchanged'}")
            return
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        log.info("sync_workers watching interval=%s", interval)
        while not stopping:
            close_old_connections()
            try:
                supervisor.sync()
            except Exception as exc:  # noqa: BLE001 — the database or supervisord restarting: try again
                log.warning("sync_workers: %s: %s", exc.__class__.__name__, exc)
            time.sleep(interval)

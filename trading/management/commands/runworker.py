"""`manage.py runworker --strategy NAME`: one strategy's worker process."""
import logging
import signal

from django.core.management.base import BaseCommand, CommandError

from strategies.params import ParameterError
from trading.execution.sender import DetachedSender
from trading.execution.worker import Worker, WorkerLockError
from trading.models import Strategy

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the worker of one strategy: hourly bars → decisions → orders → trades."
    # Django's system checks ran in `manage.py boot` before supervisord started this process (and run in
    # `manage.py check`); here they would import the admin and the URL conf for nothing (issue 19).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--strategy", required=True)
        parser.add_argument("--block-ms", type=int, default=1000)

    def handle(self, *args, strategy, block_ms=1000, **options):
        if not Strategy.objects.filter(name=strategy).exists():
            raise CommandError(f"no strategy named {strategy!r}")
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        try:
            Worker(strategy, block_ms=block_ms, stopping=lambda: bool(stopping), sender=DetachedSender(strategy)).run()
        except (WorkerLockError, ParameterError) as exc:
            raise CommandError(str(exc)) from None

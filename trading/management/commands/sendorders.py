"""`manage.py sendorders --strategy NAME`: a worker's order sender (started by the worker itself)."""
import signal

from django.core.management.base import BaseCommand, CommandError

from trading.execution.sender import run_sender
from trading.models import Strategy


class Command(BaseCommand):
    help = "Deliver one strategy's pending orders; runs until its standard input closes (see execution.sender)."
    # Django's system checks ran in `manage.py boot` before supervisord started this process (and run in
    # `manage.py check`); here they would import the admin and the URL conf for nothing (issue 19).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--strategy", required=True)

    def handle(self, *args, strategy, **options):
        row = Strategy.objects.filter(name=strategy).first()
        if row is None:
            raise CommandError(f"no strategy named {strategy!r}")
        # Stopping is the worker's call (it closes the pipe): a signal to the group must not cut a POST.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run_sender(row)

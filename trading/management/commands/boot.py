"""`manage.py boot`: what the entrypoint does before supervisord, in one process.

Waits for the database (and Redis when it is not started here); then, holding an exclusive lock (a
file lock on RUNTIME_DIR/migrate.lock, and on PostgreSQL an advisory lock, which containers with
volumes of their own share), migrates, collects the static files, creates the admin login, loads the
demo strategies and market when asked, and renders the worker programs: two starts at once on one
database prepare one after the other, and the second finds everything done. Each step is the management command of the same name, so a step run alone does the
same; one process instead of seven saves the Python and Django start-up of six on every container start.
"""
import fcntl
from contextlib import contextmanager

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

ADVISORY_KEY = 0x50494E454F5053  # "PINEOPS"


@contextmanager
def boot_lock():
    settings.RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.RUNTIME_DIR / "migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        advisory = connection.vendor == "postgresql"
        if advisory:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_KEY])
        try:
            yield
        finally:
            if advisory:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])
            fcntl.flock(lock, fcntl.LOCK_UN)


class Command(BaseCommand):
    help = ("Wait for the database (and Redis), migrate under RUNTIME_DIR/migrate.lock, collect static files, "
            "create the admin login, load the demo, render the worker programs.")

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for each service")
        parser.add_argument("--redis", action="store_true", help="also wait for Redis")
        parser.add_argument("--load-demo", action="store_true", help="load the demo instruments and strategies")
        parser.add_argument("--prepare-demo", action="store_true", help="generate the demo market")

    def handle(self, *args, timeout=60, redis=False, load_demo=False, prepare_demo=False, **options):
        call_command("wait_for", database=True, redis=redis, timeout=timeout)
        with boot_lock():
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            call_command("ensure_admin", stdout=self.stdout)
            if load_demo:
                call_command("load_demo", stdout=self.stdout)
            if prepare_demo:
                call_command("prepare_demo", stdout=self.stdout)
            call_command("sync_workers", stdout=self.stdout)

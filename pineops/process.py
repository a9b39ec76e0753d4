"""Which kind of process this is, read from its command line before Django starts (no Django import here).

The headless processes (the worker, its order sender, the hub, the supervisor sync) never serve the admin
and never run a Celery task: they skip the admin's modules (pineops.admin_site), the Celery app and
django-celery-beat (pineops.settings, pineops/__init__), which cost them most of their memory and
start-up (issue 19). The worker also runs pandas without pyarrow (see keep_out_unused).
"""
import sys
from pathlib import Path

HEADLESS_COMMANDS = frozenset({"runworker", "sendorders", "runhub", "sync_workers"})
# pandas imports pyarrow whenever it is installed (databento needs it: the hub, the backtest CLI). The worker's
# frames hold bars and features, it reads no Arrow data: without it pandas keeps strings in Python objects and
# the worker ~50 MB less. A module named here cannot be imported by that command (ModuleNotFoundError).
UNUSED_BY = {"runworker": ("pyarrow",)}


def command(argv: list[str] | None = None) -> str | None:
    """The command of `manage.py <command> …` (None for any other program)."""
    argv = sys.argv if argv is None else argv
    return argv[1] if len(argv) > 1 and Path(argv[0]).name == "manage.py" else None


def headless_process(argv: list[str] | None = None) -> bool:
    """Whether this process is `manage.py <one of HEADLESS_COMMANDS>`."""
    return command(argv) in HEADLESS_COMMANDS


def keep_out_unused(argv: list[str] | None = None) -> None:
    """Before anything is imported: UNUSED_BY's modules made unimportable for this process's command (one
    imported already, as in a test run, is left as it is)."""
    for name in UNUSED_BY.get(command(argv), ()):
        sys.modules.setdefault(name, None)

"""Worker programs follow the database: one supervisord program per enabled strategy.

Only in a container with the `workers` role, and only for the strategies PINEOPS_WORKER_STRATEGIES names
when it names some (settings.ROLES, settings.WORKER_STRATEGIES): containers on several hosts share the
strategies between them, and a worker lock in Redis keeps any strategy to one running worker.

Renders `{RUNTIME_DIR}/supervisor/workers.conf` (included by supervisord.conf) and applies a
change through supervisord's XML-RPC interface on its unix socket — what `supervisorctl update`
does — so enabling a strategy in the admin starts its worker without touching files by hand.
"""
from __future__ import annotations

import logging
import os
import socket
import xmlrpc.client
from pathlib import Path

from django.conf import settings

from trading.models import Strategy

log = logging.getLogger(__name__)

PROGRAM = """[program:worker-{name}]
command={command}
directory=%(ENV_PINEOPS_HOME)s
; A standby when another host's worker holds the strategy's lock: it takes over once that lease runs out.
environment=PINEOPS_WORKER_WAITS_FOR_LOCK="true"
autostart=true
autorestart=true
startsecs=3
startretries=10
stopsignal=TERM
stopwaitsecs=60
stopasgroup=true
killasgroup=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
stderr_logfile=/dev/stderr
stderr_logfile_maxbytes=0
"""


def config_path() -> Path:
    return settings.RUNTIME_DIR / "supervisor" / "workers.conf"


def socket_path() -> Path:
    return settings.RUNTIME_DIR / "supervisor.sock"


def render(names: list[str]) -> str:
    template = settings.WORKER_COMMAND
    header = "; Rendered from the database by `manage.py sync_workers`; edits here are overwritten.\n"
    return header + "\n".join(PROGRAM.format(name=n, command=template.format(strategy=n)) for n in sorted(names))


def enabled_strategy_names() -> list[str]:
    """The strategies that get a worker program here: those needing a worker (Strategy.objects.needing_worker),
    of this container's PINEOPS_WORKER_STRATEGIES when set, none without the `workers` role."""
    if "workers" not in settings.ROLES:
        return []
    names = Strategy.objects.needing_worker().order_by("name").values_list("name", flat=True)
    if settings.WORKER_STRATEGIES is not None:
        names = names.filter(name__in=settings.WORKER_STRATEGIES)
    return list(names)


def write_config(text: str) -> bool:
    """Write the rendered programs atomically; False when the file already says the same."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def rpc(timeout: float | None = None) -> xmlrpc.client.ServerProxy:
    """supervisord's XML-RPC interface on its unix socket; `timeout`: seconds a call may take (a frozen
    supervisord must not freeze a page that asks it)."""
    from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

    transport = SupervisorTransport(None, None, f"unix://{socket_path()}")
    if timeout is not None:
        class Timed(UnixStreamHTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(self.socketfile)

        def connection():
            conn = Timed("localhost")
            conn.socketfile = str(socket_path())
            return conn

        transport._get_connection = connection
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def programs(timeout: float = 2.0) -> list[dict] | str:
    """Every program supervisord runs (group, name, state, pid, uptime text), or why it could not be asked."""
    path = socket_path()
    if not path.exists():
        return f"supervisord is not running here (no socket at {path})"
    try:
        infos = rpc(timeout).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error) as exc:
        return f"supervisord did not answer at {path}: {exc.__class__.__name__}: {exc}"
    return [{"group": i["group"], "name": i["name"] if i["group"] == i["name"] else f"{i['group']}:{i['name']}",
             "state": i["statename"], "pid": i["pid"] or None, "description": i["description"]}
            for i in sorted(infos, key=lambda i: (i["group"], i["name"]))]


def apply(server=None) -> dict:
    """Make supervisord match its config files: add, restart changed and remove worker groups."""
    server = server or rpc()
    added, changed, removed = server.supervisor.reloadConfig()[0]
    for group in removed + changed:
        try:
            server.supervisor.stopProcessGroup(group, True)
        except xmlrpc.client.Fault as fault:
            log.warning("stopping group=%s: %s", group, fault.faultString)
        server.supervisor.removeProcessGroup(group)
    for group in changed + added:
        server.supervisor.addProcessGroup(group)
    result = {"added": added, "changed": changed, "removed": removed}
    if any(result.values()):
        log.info("worker programs updated added=%s changed=%s removed=%s", added, changed, removed)
    return result


def sync(*, apply_changes: bool = True) -> dict | None:
    """Render from the database; apply through supervisord when the file changed."""
    if write_config(render(enabled_strategy_names())) and apply_changes:
        return apply()
    return None

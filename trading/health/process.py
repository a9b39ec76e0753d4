"""Liveness of a local process, and the host:pid:start tokens that name lock and claim holders.

The start time (clock ticks since boot, from /proc) makes a token name one process for good: a pid
the kernel hands to a new process later is not mistaken for the holder that died. The host is the system's
host name, or PINEOPS_HOST_NAME (unique per host: a token of another host is judged by its lease only).
"""
import functools
import os
import socket


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None


def process_alive(pid: int, start: str = "") -> bool:
    """Whether process `pid` (started at `start`, when given) still runs on this host; a zombie counts
    as dead; unsure counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = _stat(pid)
    except OSError:
        return True
    if fields is None:
        return False  # it ended between the two looks
    return fields[0] != "Z" and (not start or fields[19] == start)


def host_name() -> str:
    """This host's name in tokens and heartbeats."""
    return os.environ.get("PINEOPS_HOST_NAME") or socket.gethostname()


@functools.lru_cache(maxsize=2)
def _started(pid: int) -> str:
    """When this process (`pid`: its own) started: read once, it never changes for the life of a pid (a fork
    asks with its own)."""
    return (_stat(pid) or [""] * 20)[19]


def process_token() -> str:
    """host:pid:start of this process, as locks and claims record their holder (asked for at every order's
    claim: /proc is read once per process)."""
    pid = os.getpid()
    return f"{host_name()}:{pid}:{_started(pid)}"


def _local(token: str) -> tuple[int, str] | None:
    """(pid, start) of a token naming a process of this host, else None."""
    host, _, rest = (token or "").partition(":")
    pid, _, start = rest.partition(":")
    return (int(pid), start) if host == host_name() and pid.isdigit() else None


def holder_dead(token: str) -> bool:
    """Whether the holder named by `token` is known dead: on this host, and gone."""
    local = _local(token)
    return local is not None and not process_alive(*local)


def holder_alive_here(token: str) -> bool:
    """Whether the holder named by `token` is a live process of this host (a frozen one too)."""
    local = _local(token)
    return local is not None and process_alive(*local)

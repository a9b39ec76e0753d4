"""Liveness of a local process by pid, and the host:pid tokens that name lock and claim holders."""
import os
import socket


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs on this host (a zombie counts as dead; unsure counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False  # it ended between the two looks
    except OSError:
        return True


def process_token() -> str:
    """host:pid of this process, as locks and claims record their holder."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_dead(token: str) -> bool:
    """Whether the holder named by `token` (host:pid) is known dead: on this host, and gone."""
    host, _, pid = (token or "").partition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))

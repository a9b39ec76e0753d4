"""Liveness of a local process by pid (lock and claim holders)."""
import os


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

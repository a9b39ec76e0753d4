"""The TradersPost stand-in of the order-latency bench, in a process of its own, and how a received POST names
its signal."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

WAIT_S = 15.0  # longest wait for one POST before it is counted missing
# The stand-in answering as TradersPost does, HTTP/1.1 keep-alive: the handler's default, HTTP/1.0, closes every
# connection, so a sender's kept-alive session would connect anew for each order. TCP_NODELAY too, or an answer
# written in two parts (headers, body) waits for the client's delayed ACK (40 ms) on a kept-alive connection.
KEEP_ALIVE = ("import sys; from http.server import BaseHTTPRequestHandler as H; "
              "H.protocol_version, H.disable_nagle_algorithm = 'HTTP/1.1', True; "
              "from trading.sim.traderspost import main; sys.exit(main(sys.argv[1:]))")


def signal_id(entry: dict) -> str | None:
    body = entry.get("body")
    extras = body.get("extras") if isinstance(body, dict) else None
    return extras.get("signal_id") if isinstance(extras, dict) else None


class StandInProcess:
    """The TradersPost stand-in in a process of its own, as the broker is (HTTP/1.1 keep-alive): its handler threads stamp
    `received_at` without waiting for this process's interpreter lock, which the worker thread holds while it
    finishes its step (books, cursor) after handing the order over. What it received is followed through its
    --record file (each POST written there before it is answered), read here by a thread of this process."""

    def __init__(self, tmp: Path):
        self.record = tmp / "traderspost.jsonl"
        self.record.touch()
        self.proc = subprocess.Popen([sys.executable, "-c", KEEP_ALIVE, "--port", "0", "--record", str(self.record)],
                                     stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        line = self.proc.stdout.readline()  # "traderspost-standin on http://127.0.0.1:PORT (…)"
        if " on http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"the TradersPost stand-in did not start: {line!r}")
        self.url = line.split(" on ", 1)[1].split()[0]
        self.arrived = threading.Condition()
        self.entries: list[dict] = []
        self.by_id: dict[str, list[dict]] = {}
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._follow, name="standin-record", daemon=True)
        self._reader.start()

    def _follow(self) -> None:
        with self.record.open() as f:
            partial = ""
            while not self._stopping.is_set():
                chunk = f.readline()
                if not chunk:
                    time.sleep(0.0005)
                    continue
                partial += chunk
                if not partial.endswith("\n"):
                    continue  # a line still being written
                entry, partial = json.loads(partial), ""
                with self.arrived:
                    self.entries.append(entry)
                    self.by_id.setdefault(signal_id(entry), []).append(entry)
                    self.arrived.notify_all()

    def wait_for(self, sid: str, timeout: float = WAIT_S) -> dict | None:
        with self.arrived:
            self.arrived.wait_for(lambda: sid in self.by_id, timeout)
            got = self.by_id.get(sid)
            return got[0] if got else None

    def snapshot(self) -> list[dict]:
        with self.arrived:
            return list(self.entries)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 — never left behind
            self.proc.kill()
        self._stopping.set()
        self._reader.join(5)

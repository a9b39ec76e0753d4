"""The hub bench's live side: the local Databento gateway in its own process (as Databento's servers are), the
official client subscribed to it, and the raw reference session, a callback that only counts (and times) the
records the client decoded. Used by bench/hub_throughput.py; nothing here knows the hub.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import databento as db
import databento_dbn as dbn
from databento import DBNRecord as Record

from trading.marketdata.rawfeed import split_trades

KEY = "db-" + "benchHubThroughputKey00000001"
DATASET = "GLBX.MDP3"


class Session:
    """The client callback of one session: counts and times records, hands each one to `sink`."""

    def __init__(self, sink: Callable[[Record], None] | None = None):
        self.sink = sink
        self.records = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self.error: BaseException | None = None

    def __call__(self, rec: Record) -> None:
        if self.done.is_set():
            return
        try:
            if isinstance(rec, dbn.SystemMsg) and not rec.is_heartbeat():  # the subscription's acknowledgement
                return
            if isinstance(rec, dbn.SystemMsg):  # the gateway's first heartbeat: the data has ended
                if self.sink:
                    self.sink(rec)
                self.done.set()
                return
            if isinstance(rec, dbn.ErrorMsg):
                raise RuntimeError(f"gateway error: {rec.err}")
            if not self.records:
                self.first = time.perf_counter()
            if self.sink:
                self.sink(rec)
            self.records += 1
            self.last = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 — the client would only log it; fail the run instead
            self.error = exc
            self.done.set()

    @property
    def seconds(self) -> float:
        return self.last - self.first


def subscribe(port: int, roots: list[str], callback, blocks=None) -> db.Live:
    client = db.Live(key=KEY, gateway="127.0.0.1", port=port)
    client.add_callback(callback)
    client.subscribe(dataset=DATASET, schema="trades", stype_in="parent", symbols=[f"{r}.FUT" for r in roots])
    if blocks is not None and not split_trades(client, blocks):  # as live.run_live does
        raise RuntimeError("this databento client cannot hand trades over in blocks")
    client.start()
    return client


def close(client: db.Live) -> None:
    client.stop()
    client.block_for_close(timeout=10)


def live_session(port: int, roots: list[str], session: Session, timeout: float) -> Session:
    client = subscribe(port, roots, session)
    finished = session.done.wait(timeout)
    close(client)
    if session.error is not None:
        raise RuntimeError(f"session failed: {session.error!r}") from session.error
    if not finished:
        raise TimeoutError(f"no end-of-data heartbeat within {timeout:.0f}s ({session.records:,} records)")
    return session


@contextmanager
def gateway_process(paths: list[Path], timeout: float = 60.0):
    """`python -m trading.sim.gateway` in its own process on a free port; yields the port."""
    proc = subprocess.Popen([sys.executable, "-m", "trading.sim.gateway", *map(str, paths), "--port", "0",
                             "--key", KEY, "--heartbeat", "0.2"], cwd=Path(__file__).resolve().parent.parent,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        for line in proc.stderr:
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not start listening")
        else:
            raise RuntimeError(f"the gateway exited with {proc.wait()}")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its pipe drained
        yield int(found[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)

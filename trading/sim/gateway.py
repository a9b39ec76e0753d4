"""A local Databento Live gateway: speaks the Live protocol to the official client over loopback.

Greeting, CRAM authentication (with the client's heartbeat_interval_s), subscriptions (raw,
parent `CL.FUT`; `start=` replays from a time; trades, ohlcv, definition, …), `start_session`,
then DBN: metadata, a subscription acknowledgement per subscription, symbol mappings, records
replayed from DBN files (and their companion definitions, trading.sim.replay) at a chosen speed,
end-of-replay messages, and heartbeats whose time follows the replay clock. An unsupported schema
ends the session with an error record, an unknown symbol gets one. Fault switches: reject the
key, drop the connection after N records, stall, send a garbled record, hold the replay at a market
time, lose a product's trades in a window of market time. Binds 127.0.0.1 only.
CLI: `python -m trading.sim.gateway --help`.
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import databento_dbn as dbn
from databento.common.cram import get_challenge_response

from pineops.env import load_env
from trading.sim.httpstandin import stop_on_signal, wait_for_signal
from trading.sim.replay import SUPPORTED_SCHEMAS, Record, ReplaySource

log = logging.getLogger(__name__)
DEFAULT_HEARTBEAT = 30.0  # s: Databento's interval when the client asks for none
SEND_BUFFER = 64 * 1024  # bytes per socket write while replaying


@dataclass
class Faults:
    reject_auth: bool = False
    drop_after: int | None = None  # close the socket after this many records (once)
    stall_after: int | None = None  # pause after this many records …
    stall_seconds: float = 0.0  # … for this long (once)
    garble_at: int | None = None  # replace this record with one carrying UNDEF_PRICE and an old ts (once)
    holds: list[int] = field(default_factory=list)  # market times (ns): wait before the first record at or after
    # each until `LiveGateway.release()`, heartbeats going on at the last record's time (the market stands still)
    lose: list[tuple[str, int, int]] = field(default_factory=list)  # (root, start ns, end ns): that product's
    # trades in [start, end) never leave the gateway (lost before the hub); its definitions still do


@dataclass
class Counters:
    connections: int = 0
    auth_rejected: int = 0
    records_sent: int = 0
    heartbeats_sent: int = 0
    drops: int = 0
    lost: int = 0  # records held back by Faults.lose
    subscriptions: list = field(default_factory=list)
    auth_requests: list = field(default_factory=list)  # the clients' authentication fields, without the key's answer


class LiveGateway:
    def __init__(self, files: list[Path], *, key: str, port: int = 0, speed: float | None = None,
                 heartbeat_interval: float | None = None, faults: Faults | None = None):
        self.key = key
        self.speed = speed  # None: as fast as possible; 1.0 real time; N: N× real time
        # Seconds between heartbeats on an idle session: None honours the client's heartbeat_interval_s
        # (Databento's default, 30 s, when it asks for none); a number overrides it (fast tests).
        self.heartbeat_interval = heartbeat_interval
        self.faults = faults or Faults()
        self.counters = Counters()
        self.source = ReplaySource(files)
        self._records = self.source.records
        self._sock = socket.create_server(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self.held = threading.Event()  # set while the replay waits at a hold (Faults.holds)
        self._release = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._epoch: tuple[float, int] | None = None  # (monotonic, data ns) when the paced market started

    # --- server -----------------------------------------------------------------------------
    def start(self) -> "LiveGateway":
        t = threading.Thread(target=self._accept, name="gateway-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        try:  # closing a listening socket does not wake a thread blocked in accept(); a connection does
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            with self._lock:
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="gateway-session", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        self.counters.connections += 1
        try:
            self._session(conn)
        except (OSError, ValueError) as exc:
            log.info("gateway session ended: %s", exc)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        challenge = secrets.token_hex(16)
        conn.sendall(b"lsg_version=0.7.2\n" + f"cram={challenge}\n".encode())
        auth = _fields(reader.readline())
        self.counters.auth_requests.append({k: v for k, v in auth.items() if k != "auth"})
        expected = get_challenge_response(challenge, self.key)
        if self.faults.reject_auth or auth.get("auth") != expected:
            self.counters.auth_rejected += 1
            conn.sendall(b"success=0|error=Authentication failed.\n")
            return
        conn.sendall(f"success=1|session_id={secrets.randbelow(10**9)}\n".encode())
        dataset = auth.get("dataset", "GLBX.MDP3")
        asked = auth.get("heartbeat_interval_s")
        interval = self.heartbeat_interval or (float(asked) if asked else DEFAULT_HEARTBEAT)
        subs = []
        while True:
            line = reader.readline()
            if not line:
                return
            message = _fields(line)
            if "start_session" in message:
                break
            subs.append(message)
            self.counters.subscriptions.append(message)
        unsupported = sorted({s.get("schema", "") for s in subs} - SUPPORTED_SCHEMAS)
        if unsupported:
            err = dbn.ErrorMsg(time.time_ns(), f"Unsupported schema {', '.join(unsupported)}",
                               code=dbn.ErrorCode.INVALID_SUBSCRIPTION)
            conn.sendall(_metadata(dataset, subs) + bytes(err))
            return
        starts = [int(sub["start"]) for sub in subs if sub.get("schema") != "definition" and sub.get("start")]
        plan = self.source.plan(subs, self.market_now(min(starts) if starts else None) if self.speed else None)
        conn.sendall(_metadata(dataset, subs) + b"".join(plan.heads))
        self._replay(conn, plan.items, plan.parents, interval)

    def market_now(self, start: int | None = None) -> int:
        """The replayed market's present (ns) when pacing: it starts with the first session and runs
        `speed` times faster than the wall clock, whoever is connected. A first client that asks to start
        later (a hub restarted with the gateway, as a demo appliance restarts) finds the market there: a
        live feed's present is never behind where its client left off."""
        with self._lock:
            if self._epoch is None:  # the first client: the market starts now, with its first trade
                first = next((r.ts for r in self._records if r.schema != "definition"), None)
                first = first if first is not None else time.time_ns()
                self._epoch = (time.monotonic(), max(first, start or 0))
                return self._epoch[1]
            wall0, data0 = self._epoch
        return data0 + int((time.monotonic() - wall0) * self.speed * 1e9)

    def _replay(self, conn, items: list, parents: dict[int, str], interval: float) -> None:
        """Records go out in writes of up to SEND_BUFFER bytes, as a server writes its socket: all
        that is due leaves before the replay waits (paced), stalls or drops the connection."""
        faults = self.faults
        if not self.speed and faults.drop_after is None and faults.stall_after is None and faults.garble_at is None \
                and not faults.holds and not faults.lose:
            clock = self._blast(conn, items, parents)  # as fast as possible, nothing to inject
        else:
            clock = self._paced(conn, items, parents, interval)
        if clock is None:  # stopped, or the connection dropped on purpose
            return
        # Data ended: the replay clock goes on (an hour per heartbeat when replaying fast) so a
        # client sees the last minutes and hours close, as it would on a live feed.
        step = int((interval * self.speed if self.speed else 3600) * 1e9)
        while not self._stop.wait(interval):
            clock += step
            self._heartbeat(conn, clock)

    def _blast(self, conn, items: list, parents: dict[int, str]) -> int | None:
        """The whole replay joined once and written in SEND_BUFFER blocks: the gateway's own work per
        record stays small, so a benchmark measures the client, not this stand-in."""
        mapped: set[int] = set()
        parts = []
        last, sent = None, 0
        for rec in items:
            if type(rec) is bytes:
                parts.append(rec)
                continue
            if rec.instrument_id not in mapped:
                mapped.add(rec.instrument_id)
                parts.append(self._mapping(rec, parents))
            parts.append(rec.data)
            last, sent = rec, sent + 1
        data = memoryview(b"".join(parts))
        for start in range(0, len(data), SEND_BUFFER):
            if self._stop.is_set():
                return None
            conn.sendall(data[start:start + SEND_BUFFER])
        self.counters.records_sent += sent
        return last.ts if last else time.time_ns()

    @staticmethod
    def _mapping(rec: Record, parents: dict[int, str]) -> bytes:
        return bytes(dbn.SymbolMappingMsg(1, rec.instrument_id, rec.ts, dbn.SType.PARENT,
                                          parents.get(rec.instrument_id, rec.raw_symbol), dbn.SType.RAW_SYMBOL,
                                          rec.raw_symbol, rec.ts, 2**63 - 1))

    def _paced(self, conn, items: list, parents: dict[int, str], interval: float) -> int | None:
        """Record by record: paced on the market's clock, or with a fault to inject at a record."""
        faults, mapped, out = self.faults, set(), bytearray()
        records = [r for r in items if type(r) is not bytes]

        def send() -> None:
            if out:
                conn.sendall(out)
                out.clear()

        if self.speed:  # paced on the market's clock: records before its present go at once (a replay)
            self.market_now()
            wall0, data0 = self._epoch
        else:
            wall0, data0 = time.monotonic(), records[0].ts if records else time.time_ns()
        clock = records[0].ts if records else (self.market_now() if self.speed else data0)
        last_send = time.monotonic()
        i = -1
        for rec in items:
            if self._stop.is_set():
                return None
            if type(rec) is bytes:
                out += rec
                continue
            i += 1
            if self.speed:
                due = wall0 + (rec.ts - data0) / 1e9 / self.speed
                if time.monotonic() < due:
                    send()
                while time.monotonic() < due:
                    if time.monotonic() - last_send >= interval:
                        clock = data0 + int((time.monotonic() - wall0) * self.speed * 1e9)
                        self._heartbeat(conn, clock)
                        last_send = time.monotonic()
                    time.sleep(min(0.05, max(0.0, due - time.monotonic())))
            if faults.holds and rec.ts >= faults.holds[0]:
                at = faults.holds[0]
                send()
                self._hold(conn, clock, interval)
                if self._stop.is_set():
                    return None
                # Passed only once released: a session that ends while held (the client went away) leaves
                # the hold in place, and the client's next session waits at it again (a release given
                # between the two sessions is kept for it).
                if faults.holds and faults.holds[0] == at:  # (a session the client left may wake with it)
                    faults.holds.pop(0)
                    self._release.clear()
            if faults.stall_after is not None and i == faults.stall_after and faults.stall_seconds:
                faults.stall_after = None
                send()
                self._stop.wait(faults.stall_seconds)
            if faults.drop_after is not None and i == faults.drop_after:
                faults.drop_after = None
                self.counters.drops += 1
                send()
                conn.shutdown(socket.SHUT_RDWR)
                return None
            if faults.lose and rec.schema != "definition" and self._lost(rec):
                self.counters.lost += 1
                continue
            if rec.instrument_id not in mapped:
                mapped.add(rec.instrument_id)
                out += self._mapping(rec, parents)
            data = rec.data
            if faults.garble_at is not None and i == faults.garble_at:
                faults.garble_at = None
                data = _garbled(data)
            out += data
            self.counters.records_sent += 1
            if len(out) >= SEND_BUFFER:
                send()
            clock = rec.ts
            last_send = time.monotonic()
        send()
        return clock

    def _lost(self, rec: Record) -> bool:
        root = self.source.roots.get(rec.instrument_id)
        return any(root == r and start <= rec.ts < end for r, start, end in self.faults.lose)

    def release(self) -> None:
        """Let a replay waiting at a hold go on."""
        self.held.clear()
        self._release.set()

    def _hold(self, conn, clock: int, interval: float) -> None:
        self.held.set()
        while not self._release.wait(interval) and not self._stop.is_set():
            self._heartbeat(conn, clock)
        self.held.clear()

    def _heartbeat(self, conn, ts: int) -> None:
        conn.sendall(bytes(dbn.SystemMsg(ts, "Heartbeat", code=dbn.SystemCode.HEARTBEAT)))
        self.counters.heartbeats_sent += 1


def _fields(line: bytes) -> dict:
    text = line.decode("utf-8", "replace").strip()
    return {k: v for k, _, v in (t.partition("=") for t in text.split("|") if t)}


def _metadata(dataset: str, subs: list[dict]) -> bytes:
    schemas = {s.get("schema") for s in subs}
    schema = dbn.Schema.from_str(schemas.pop()) if len(schemas) == 1 else None
    symbols = sorted({sym for s in subs for sym in s.get("symbols", "").split(",") if sym})
    start = min((int(s.get("start") or 0) for s in subs), default=0)
    meta = dbn.Metadata(dataset=dataset, start=start, stype_in=dbn.SType.PARENT, stype_out=dbn.SType.INSTRUMENT_ID,
                        schema=schema, symbols=symbols, mappings=[])
    return bytes(meta.encode())


def _garbled(data: bytes) -> bytes:
    """Same record, but the price is UNDEF_PRICE and the time is an hour earlier."""
    buf = bytearray(data)
    ts = int.from_bytes(buf[8:16], "little") - 3_600_000_000_000
    buf[8:16] = ts.to_bytes(8, "little")
    buf[16:24] = dbn.UNDEF_PRICE.to_bytes(8, "little", signed=True)
    return bytes(buf)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading.sim.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="DBN files (or directories of them) to replay")
    parser.add_argument("--port", type=int, default=13000)
    parser.add_argument("--key", help="API key clients must present (32 chars, like db-…); "
                                      "default: DATABENTO_API_KEY from the environment or .env")
    parser.add_argument("--speed", type=float, default=0.0, help="0: as fast as possible; 1: real time; N: N×")
    parser.add_argument("--heartbeat", type=float, default=None,
                        help="seconds between heartbeats when idle (default: what the client asks for)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s gateway %(message)s")
    load_env()
    key = args.key or os.environ.get("DATABENTO_API_KEY", "")
    if not key:
        parser.error("no API key: pass --key or set DATABENTO_API_KEY")
    files = sorted(f for path in args.files
                   for f in ([p for p in path.iterdir() if p.name.endswith((".dbn", ".dbn.zst"))] if path.is_dir() else [path]))
    if not files:
        parser.error(f"no DBN files in {', '.join(map(str, args.files))}")
    stop = stop_on_signal()  # before it says it is up
    gateway = LiveGateway(files, key=key, port=args.port, speed=args.speed or None,
                          heartbeat_interval=args.heartbeat).start()
    log.info("listening on 127.0.0.1:%d with %d records", gateway.port, len(gateway._records))
    wait_for_signal(stop)
    gateway.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

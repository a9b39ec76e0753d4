"""A local stand-in for Databento's historical API, for the official `databento.Historical` client
(`Historical(key, gateway="https://127.0.0.1:PORT")`): HTTPS on 127.0.0.1 only.

Serves what warmup calls, as databento 0.88 builds the URLs: `POST /v0/timeseries.get_range`
(trades, ohlcv-1m/1h/1d and definition of the DBN files of a directory; ohlcv built per instrument
from the trades as Databento builds it; zstd DBN streamed with chunked encoding; parent symbology
maps every instrument to its parent, as Databento's metadata does) and `POST /v0/metadata.get_cost`.
Databento's error answers: 401 for a wrong key, 422 for a request it cannot serve, and scripted
ones (`script(...)`): 429 with Retry-After, 5xx, or a response cut off after N bytes.
The client speaks HTTPS only: a throw-away self-signed certificate is made with `openssl`; a client
trusts it with REQUESTS_CA_BUNDLE=<ca_file>. The key is never logged.
CLI: `python -m trading.sim.historical DIR --port 13001` (prints the URL and the CA file).
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import ssl
import subprocess
import tempfile
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs

import databento_dbn as dbn
import numpy as np
import pandas as pd
import zstandard

from pineops.env import load_env
from trading.marketdata.dbnfile import read_records
from trading.sim.httpstandin import stop_on_signal, wait_for_signal

log = logging.getLogger(__name__)
NS = 1_000_000_000
BARS = {"ohlcv-1m": (60 * NS, dbn.RType.OHLCV_1M), "ohlcv-1h": (3600 * NS, dbn.RType.OHLCV_1H),
        "ohlcv-1d": (86400 * NS, dbn.RType.OHLCV_1D)}
SCHEMAS = {"trades", "definition", *BARS}


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl (a day's validity is plenty)."""
    cert, key = directory / "historical-cert.pem", directory / "historical-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class HistoricalData:
    """The records of a directory's DBN files, by schema, with what each instrument is."""

    def __init__(self, directory: Path):
        self.definitions: list = []
        trades: list = []
        self.files: dict[str, list] = {}  # other schemas, served as they are
        self.symbols: dict[int, str] = {}
        self.roots: dict[int, str] = {}
        for path in sorted(p for p in Path(directory).iterdir() if p.name.endswith((".dbn", ".dbn.zst"))):
            reading = read_records(path)
            self.symbols.update(reading.symbols)
            if reading.schema == "definition":
                self.definitions += reading.records
            elif reading.schema == "trades":
                trades += reading.records
            else:
                self.files.setdefault(reading.schema, []).extend(reading.records)
        for d in sorted(self.definitions, key=lambda r: r.ts_event):
            self.symbols[d.instrument_id], self.roots[d.instrument_id] = d.raw_symbol, d.asset
        self.trades = pd.DataFrame({"ts": np.array([r.ts_event for r in trades], dtype=np.int64),
                                    "iid": np.array([r.instrument_id for r in trades], dtype=np.int64),
                                    "price": np.array([r.price for r in trades], dtype=np.int64),
                                    "size": np.array([r.size for r in trades], dtype=np.int64)}).sort_values(
            "ts", kind="stable")

    def instruments(self, symbols: list[str], stype_in: str) -> dict[str, set[int]]:
        out = {}
        for symbol in symbols:
            if stype_in == "parent":
                out[symbol] = {i for i, r in self.roots.items() if r == symbol.split(".")[0]}
            else:
                out[symbol] = {i for i, raw in self.symbols.items() if raw == symbol}
        return out

    def records(self, schema: str, ids: set[int], start: int, end: int) -> list[bytes]:
        if schema == "definition":
            return [bytes(d) for d in sorted(self.definitions, key=lambda r: r.ts_event)
                    if d.instrument_id in ids and start <= d.ts_event < end]
        if schema in BARS:
            width, rtype = BARS[schema]
            t = self.trades[self.trades["iid"].isin(ids)]
            t = t.assign(bar=t["ts"] // width * width)
            t = t[(t["bar"] >= start) & (t["bar"] < end)]
            g = t.groupby(["bar", "iid"], sort=True)
            bars = pd.DataFrame({"open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(),
                                 "close": g["price"].last(), "volume": g["size"].sum()}).reset_index()
            return [bytes(dbn.OHLCVMsg(rtype, 1, int(b.iid), int(b.bar), int(b.open), int(b.high), int(b.low),
                                       int(b.close), int(b.volume))) for b in bars.itertuples(index=False)]
        if schema == "trades":
            raise ValueError("trades are not served by this stand-in: ask for ohlcv or definition")
        return [bytes(r) for r in self.files.get(schema, []) if r.instrument_id in ids and start <= r.ts_event < end]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a cut connection (on purpose) or a client gone
        log.info("historical stand-in: a connection ended early")


def _ns(text: str) -> int:
    stamp = pd.Timestamp(int(text)) if text.isdigit() else pd.Timestamp(text)
    return int((stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).value)


def _error(status: int, case: str, message: str) -> tuple[int, dict]:
    return status, {"detail": {"case": case, "message": message, "status_code": status, "docs": None}}


class HistoricalStandIn:
    def __init__(self, directory: Path, *, key: str, port: int = 0, dollars_per_gb: float = 5.0,
                 cert_dir: Path | None = None):
        self.data = HistoricalData(directory)
        self.key, self.dollars_per_gb = key, dollars_per_gb
        self._script: deque = deque()
        self._lock = threading.Lock()
        self.requests: list[dict] = []  # path and form of every request (never the key)
        self.downloads = 0  # get_range answers sent whole
        self._tmp = None if cert_dir else tempfile.TemporaryDirectory(prefix="pineops-historical-")
        self.ca_file, keyfile = self_signed_certificate(Path(cert_dir or self._tmp.name))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, keyfile)
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="historical-standin", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def script(self, *answers: dict) -> None:
        """The next get_range requests' answers, in order: {"status": 429, "retry_after": "0"},
        {"status": 503}, {"cut_after": bytes}; then the normal answers."""
        with self._lock:
            self._script.extend(answers)

    def calls(self, endpoint: str) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith(endpoint)]

    def start(self) -> "HistoricalStandIn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- requests ---------------------------------------------------------------------------
    def _query(self, form: dict) -> tuple[int, dict] | tuple[bytes, int]:
        """(DBN bytes, uncompressed size) of a request, or (status, body) of the error it gets."""
        dataset, schema = form.get("dataset", ""), form.get("schema", "")
        if dataset != "GLBX.MDP3":
            return _error(422, "dataset_invalid", f"dataset {dataset!r} is not served here (GLBX.MDP3 is)")
        if schema not in SCHEMAS:
            return _error(422, "schema_invalid", f"schema {schema!r} is not served here")
        try:
            start, end = _ns(form["start"]), _ns(form.get("end") or form["start"])
        except (KeyError, ValueError):
            return _error(422, "params_invalid_time", "start and end must be times")
        if end <= start:
            return _error(422, "params_invalid_range", "end must be after start")
        symbols = [s for s in form.get("symbols", "").split(",") if s]
        found = self.data.instruments(symbols, form.get("stype_in", "raw_symbol"))
        missing = [s for s, ids in found.items() if not ids]
        if missing or not symbols:
            return _error(422, "symbology_invalid_symbol", f"could not resolve symbols: {', '.join(missing) or '-'}")
        try:
            records = self.data.records(schema, set().union(*found.values()), start, end)
        except ValueError as exc:
            return _error(422, "schema_invalid", str(exc))
        day = lambda ns: pd.Timestamp(ns, tz="UTC").date()  # noqa: E731
        maps = [SimpleNamespace(raw_symbol=s, intervals=[SimpleNamespace(start_date=day(start), end_date=day(end),
                                                                         symbol=str(i)) for i in sorted(ids)])
                for s, ids in found.items()]
        stype = dbn.SType.PARENT if form.get("stype_in") == "parent" else dbn.SType.RAW_SYMBOL
        meta = dbn.Metadata(dataset=dataset, start=start, end=end, stype_in=stype, stype_out=dbn.SType.INSTRUMENT_ID,
                            schema=dbn.Schema.from_str(schema), symbols=symbols, mappings=maps)
        body = b"".join(records)
        data = bytes(meta.encode()) + body
        if form.get("compression", "zstd") == "zstd":
            data = zstandard.ZstdCompressor().compress(data)
        return data, len(body)

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: never a key in a log
                pass

            def _json(self, status: int, body, headers: dict | None = None):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._json(*_error(404, "not_found", f"no such endpoint {self.path}"))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with owner._lock:
                    owner.requests.append({"path": self.path, "form": form})
                if not self._authorised():
                    return self._json(*_error(401, "auth_invalid_api_key", "Authentication failed."))
                if self.path == "/v0/metadata.get_cost":
                    answer = owner._query(form)
                    if isinstance(answer[0], int):
                        return self._json(*answer)
                    return self._json(200, round(answer[1] * owner.dollars_per_gb / 1e9, 6))
                if self.path != "/v0/timeseries.get_range":
                    return self._json(*_error(404, "not_found", f"no such endpoint {self.path}"))
                with owner._lock:
                    scripted = owner._script.popleft() if owner._script else None
                if scripted and "status" in scripted:
                    status = int(scripted["status"])
                    headers = {"Retry-After": str(scripted["retry_after"])} if "retry_after" in scripted else {}
                    return self._json(*_error(status, "rate_limited" if status == 429 else "internal_error",
                                              "Too many requests." if status == 429 else "Internal server error."),
                                      headers)
                answer = owner._query(form)
                if isinstance(answer[0], int):
                    return self._json(*answer)
                self._stream(answer[0], scripted.get("cut_after") if scripted else None)

            def _stream(self, data: bytes, cut_after: int | None):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = 16 * 1024
                for start in range(0, len(data), chunk):
                    part = data[start:start + chunk]
                    if cut_after is not None and start + len(part) > cut_after:
                        part = part[:max(0, cut_after - start)]
                        self.wfile.write(f"{len(part) + 1:x}\r\n".encode() + part)
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)  # mid-chunk, no end: a connection cut
                        return
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                with owner._lock:
                    owner.downloads += 1

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return False
                user, _, _ = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
                return user == owner.key

        return Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading.sim.historical", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="DBN files to serve (trades and their definitions)")
    parser.add_argument("--port", type=int, default=13001)
    parser.add_argument("--key", help="API key clients must present (default: DATABENTO_API_KEY)")
    parser.add_argument("--cert-dir", type=Path, help="where the certificate goes (default: a temporary directory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s historical %(message)s")
    load_env()
    key = args.key or os.environ.get("DATABENTO_API_KEY", "")
    if not key:
        parser.error("no API key: pass --key or set DATABENTO_API_KEY")
    stop = stop_on_signal()  # before it says it is up
    standin = HistoricalStandIn(args.directory, key=key, port=args.port, cert_dir=args.cert_dir).start()
    print(f"listening on {standin.url}; clients: REQUESTS_CA_BUNDLE={standin.ca_file} "
          f"DATABENTO_HISTORICAL_GATEWAY={standin.url}", flush=True)
    wait_for_signal(stop)
    standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Base of the local HTTP stand-ins (TradersPost, Discord): record every POST, answer on demand.

Bound to 127.0.0.1 only. Scripted answers are queued from Python (`script(...)`) or over HTTP
(`POST /_control` with {"script": [{"status": 500}, ...]}); `GET /_received` lists what arrived.
"""
from __future__ import annotations

import json
import signal
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def wait_for_signal() -> None:
    """Block a stand-in's CLI until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


class StandIn:
    name = "stand-in"

    def __init__(self, port: int = 0, record: Path | None = None):
        self.received: list[dict] = []
        self._script: deque = deque()
        self._lock = threading.Lock()
        self.record = record
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: paths carry secret tokens
                pass

            def do_GET(self):
                if self.path.startswith("/_received") or self.path == "/":
                    owner._send(self, 200, {"received": owner.snapshot()})
                else:
                    owner._send(self, 404, {"error": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path == "/_control":
                    owner.script(*json.loads(raw or b"{}").get("script", []))
                    owner._send(self, 200, {"ok": True})
                    return
                owner._handle(self, raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name=self.name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def script(self, *answers: dict) -> None:
        """Queue answers: {"status": 500, "body": {...}, "headers": {...}, "delay": seconds}."""
        with self._lock:
            self._script.extend(answers)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.received)

    def next_answer(self) -> dict | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def remember(self, entry: dict) -> None:
        with self._lock:
            self.received.append(entry)
        if self.record:
            with self.record.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    @staticmethod
    def _send(handler, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, str(v))
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler, raw: bytes) -> None:  # overridden
        raise NotImplementedError

    def _answer(self, handler, entry: dict, default_status: int, default_body) -> None:
        scripted = self.next_answer()
        if scripted and scripted.get("delay"):
            time.sleep(float(scripted["delay"]))
        status = int(scripted.get("status", default_status)) if scripted else default_status
        body = scripted.get("body", default_body) if scripted else default_body
        entry.update(status=status)
        self.remember(entry)
        self._send(handler, status, body, (scripted or {}).get("headers"))

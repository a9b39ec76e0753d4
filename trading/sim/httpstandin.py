"""Shared base of the local webhook stand-ins (TradersPost, Discord): record every POST, answer on demand.

Binds 127.0.0.1 only and never logs request lines (webhook paths carry secret tokens). Answers come
from, in order: the stand-in's own checks (`reject`, e.g. validation or a rate limit; these consume
no script), then the queue of scripted answers, then the stand-in's normal answer (`accept`).
Script from Python with `script(500, 500, {"status": 200})`, or over HTTP with
`POST /_control {"script": [...]}` / `{"reset": true}`. `GET /_received` returns JSON; so does `GET /`
unless a browser asks for HTML: then the newest requests, one line each, each linking to
`GET /received/<n>` (its whole body, safe headers and the answer given). Pages never show a path
(a webhook's path is its secret; an 8-hex fingerprint stands in) and escape every byte they were sent.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from trading.sim.standin_pages import PAGE_ROWS, Pages, webhook_fingerprint  # noqa: F401 — re-exported


def stop_on_signal() -> threading.Event:
    """An event SIGTERM or Ctrl-C sets, its handlers installed now: before a simulator says it is up, so a
    signal that follows that line at once stops it cleanly instead of killing it."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def wait_for_signal(stop: threading.Event | None = None) -> None:
    """Block a simulator's CLI until SIGTERM or Ctrl-C."""
    (stop or stop_on_signal()).wait()


_DETAIL = re.compile(r"/received/([0-9]{1,9})")

SECRET_HEADER_WORDS = ("auth", "cookie", "token", "secret", "key", "signature", "session")


def safe_headers(headers) -> dict:
    """Request headers worth recording, without anything that could carry a credential."""
    return {k: v for k, v in headers.items() if not any(w in k.lower() for w in SECRET_HEADER_WORDS)}


def answer(status: int = 200, body=None, headers: dict | None = None, delay: float = 0.0) -> dict:
    """One scripted answer. `delay` seconds of sleep before it is sent (a slow or timing-out server)."""
    out = {"status": int(status)}
    if body is not None:
        out["body"] = body
    if headers:
        out["headers"] = dict(headers)
    if delay:
        out["delay"] = float(delay)
    return out


def _as_answer(item) -> dict:
    if isinstance(item, int):
        return answer(item)
    if isinstance(item, dict) and "status" in item or isinstance(item, dict) and "delay" in item:
        return dict(item)
    raise ValueError(f"a scripted answer is a status code or a dict with 'status'/'delay', not {item!r}")


class HttpStandIn(Pages):
    name = "stand-in"
    default_port = 0

    def __init__(self, port: int = 0, record: Path | None = None):
        self.received: list[dict] = []
        self._answers: list[dict | None] = []  # beside `received`, one each: kept out of /_received and the record
        self._script: deque = deque()
        self._lock = threading.Lock()
        self.record = Path(record) if record else None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: paths carry secret tokens
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                browser = "text/html" in (self.headers.get("Accept") or "")
                detail = _DETAIL.fullmatch(url.path)
                page = None
                if url.path == "/_received":
                    owner._send(self, 200, owner.snapshot())
                    return
                if url.path == "/" and not browser:
                    owner._send(self, 200, owner.snapshot())
                    return
                if url.path == "/":
                    before = (parse_qs(url.query).get("before") or [""])[0]
                    page = owner.index_page(int(before) if before.isdigit() and len(before) < 10 else None)
                elif detail:
                    page = owner.detail_page(int(detail[1]))
                if page is not None:
                    owner._send_html(self, 200, page)
                elif browser:
                    owner._send_html(self, 404, owner.not_found_page())
                else:
                    owner._send(self, 404, {"message": "not found"})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if urlsplit(self.path).path == "/_control":
                    try:
                        command = json.loads(raw or b"{}")
                        state = owner.control(command)
                    except (ValueError, TypeError, AttributeError) as exc:
                        owner._send(self, 400, {"message": f"bad control command: {exc}"})
                        return
                    owner._send(self, 200, state)
                    return
                owner._handle(self, raw)

        if self.record and self.record.exists():
            self._restore()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name=self.name, daemon=True)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port}, received={len(self.received)})"

    # --- scripting and inspection -----------------------------------------------------------------
    def script(self, *answers) -> None:
        """Queue answers: status codes or dicts {"status", "body", "headers", "delay"} (see `answer`)."""
        items = [_as_answer(a) for a in answers]
        with self._lock:
            self._script.extend(items)

    def pending_script(self) -> list[dict]:
        with self._lock:
            return list(self._script)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self._answers.clear()
            self._script.clear()

    def control(self, command: dict) -> dict:
        """What `POST /_control` does: {"reset": true} then {"script": [...]}; returns the state."""
        if command.get("reset"):
            self.reset()
        if "script" in command:
            self.script(*command["script"])
        return {"ok": True, "received": len(self.snapshot()), "script": self.pending_script()}

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self.received]

    def entry(self, n: int) -> tuple[dict, dict | None, int] | None:
        """Request number `n` (1 = the first since the start or the last reset): (entry, the answer given or
        None when it came from the record file, how many there are), or None when there is no such request."""
        with self._lock:
            if not 1 <= n <= len(self.received):
                return None
            given = self._answers[n - 1] if n - 1 < len(self._answers) else None
            return dict(self.received[n - 1]), given, len(self.received)

    # --- behaviour of a concrete stand-in -----------------------------------------------------------
    def reject(self, entry: dict):
        """(status, body, headers) to refuse the request before any script, or None."""
        return None

    def accept(self, entry: dict):
        """(status, body, headers) of the normal answer."""
        return 200, {"success": True}, {}

    def answered(self, entry: dict, status: int) -> None:
        """Called after an answer is chosen (e.g. to move a modelled position on a 2xx)."""

    # --- internals ---------------------------------------------------------------------------------
    def _restore(self) -> None:
        """What an earlier run recorded, answered as it was: a stand-in restarted with the appliance goes
        on from there (the TradersPost one still holds the positions it was sent)."""
        for line in self.record.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write
            if isinstance(entry, dict) and "status" in entry and "body" in entry:
                self.received.append(entry)
                self._answers.append(None)
                self.answered(entry, entry["status"])

    def _next_scripted(self) -> dict | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _remember(self, entry: dict, given: dict | None = None) -> None:
        with self._lock:
            self.received.append(entry)
            self._answers.append(given)
        if self.record:
            with self.record.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def _handle(self, handler, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw else None
            is_json = True
        except ValueError:
            body, is_json = raw.decode("utf-8", "replace"), False
        entry = {"path": handler.path, "headers": safe_headers(handler.headers), "body": body,
                 "json": is_json, "received_at": time.time(), "status": None}
        delay = 0.0
        refused = self.reject(entry)
        if refused:
            status, reply, headers = refused
        else:
            scripted = self._next_scripted()
            if scripted:
                delay = float(scripted.get("delay") or 0.0)
                status = int(scripted.get("status", 200))
                default = self.accept(entry) if 200 <= status < 300 and "body" not in scripted else (None, {}, {})
                reply, headers = scripted.get("body", default[1]), scripted.get("headers") or {}
            else:
                status, reply, headers = self.accept(entry)
        entry["status"] = status
        self.answered(entry, status)
        self._remember(entry, {"status": status, "body": reply, "headers": dict(headers or {}), "delay": delay})
        if delay:
            time.sleep(delay)
        try:
            self._send(handler, status, reply, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    @staticmethod
    def _send(handler, status: int, body, headers: dict | None = None) -> None:
        data = b"" if status == 204 or body is None else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        handler.send_response(status)
        if data:
            handler.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, str(v))
        handler.end_headers()
        if data:
            handler.wfile.write(data)

    @staticmethod
    def _send_html(handler, status: int, page: str) -> None:
        data = page.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def run_cli(cls, argv=None, *, prog: str, description: str, configure=None) -> int:
    """The stand-ins' command line: `--port N [--record FILE.jsonl]`, runs until SIGTERM/Ctrl-C."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=cls.default_port)
    parser.add_argument("--record", type=Path, help="append every received POST to this JSONL file")
    if configure:
        configure(parser)
    args = parser.parse_args(argv)
    extra = {k: v for k, v in vars(args).items() if k not in ("port", "record")}
    stop = stop_on_signal()
    standin = cls(args.port, args.record, **extra).start()
    print(f"{cls.name} on {standin.url} (GET {standin.url}/_received, POST {standin.url}/_control)", flush=True)
    try:
        wait_for_signal(stop)
    finally:
        standin.stop()
    return 0

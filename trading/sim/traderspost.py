"""A local TradersPost stand-in: validates orders like TradersPost, records them, answers on demand.

Every POST is recorded with the time received. An `exit` with nothing open is answered 400 like
TradersPost does (it rejects an exit with no position), tracked per path and ticker.
CLI: `python -m trading.sim.traderspost --port 8766 [--record FILE.jsonl]`.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trading.sim.standin import StandIn, wait_for_signal

ACTIONS = {"buy", "sell", "exit", "cancel", "add"}
TIF = {"day", "gtc", "opg", "cls", "ioc", "fok"}


def validate(order) -> str:
    if not isinstance(order, dict):
        return "body must be a JSON object"
    for name in ("ticker", "action"):
        if not order.get(name):
            return f"{name} is required"
    if order["action"] not in ACTIONS:
        return f"invalid action {order['action']!r}"
    qty = order.get("quantity")
    if qty is not None and (not isinstance(qty, (int, float)) or qty <= 0):
        return "quantity must be a positive number"
    if order.get("timeInForce") not in (None, *TIF):
        return f"invalid timeInForce {order.get('timeInForce')!r}"
    return ""


class TradersPostStandIn(StandIn):
    name = "traderspost-standin"

    def __init__(self, port: int = 0, record: Path | None = None):
        super().__init__(port, record)
        self.positions: dict[tuple[str, str], int] = {}

    def orders(self, status: int | None = 200) -> list[dict]:
        return [e["order"] for e in self.snapshot() if status is None or e["status"] == status]

    def _handle(self, handler, raw: bytes) -> None:
        entry = {"path": handler.path, "received_at": time.time(), "order": None}
        try:
            order = json.loads(raw)
        except ValueError:
            entry["order"] = raw.decode("utf-8", "replace")
            self._answer(handler, entry, 400, {"success": False, "message": "invalid JSON"})
            return
        entry["order"] = order
        problem = validate(order)
        if problem:
            self._answer(handler, entry, 400, {"success": False, "message": problem})
            return
        key = (handler.path, order["ticker"])
        if order["action"] == "exit" and not self.positions.get(key):
            self._answer(handler, entry, 400, {"success": False, "message": "No open position to exit"})
            return
        scripted = self._script[0] if self._script else None
        if not scripted or 200 <= int(scripted.get("status", 200)) < 300:
            if order["action"] == "buy":
                self.positions[key] = self.positions.get(key, 0) + int(order.get("quantity") or 1)
            elif order["action"] == "exit":
                self.positions[key] = 0
        self._answer(handler, entry, 200, {"success": True, "id": len(self.received) + 1})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading.sim.traderspost", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args(argv)
    standin = TradersPostStandIn(args.port, args.record).start()
    print(f"TradersPost stand-in on {standin.url} (GET {standin.url}/_received)", flush=True)
    wait_for_signal()
    standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

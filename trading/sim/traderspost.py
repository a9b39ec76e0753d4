"""A local TradersPost stand-in: validates orders like TradersPost, records them, answers on demand.

Every POST is recorded (path, non-secret headers, body, time received, status). Invalid orders get
400 {"success": false, "message": ...}. Positions are modelled per (path, ticker): an `exit` with
nothing open is answered 400 "No open position to exit" (TradersPost rejects it); pass
`model_positions=False` to accept every valid exit. With `--record FILE` the positions live on disk:
a restarted stand-in replays the file and holds what it held, as the broker does across restarts. Scripted answers (see `httpstandin`) apply to
valid orders only. A chosen order can be held unanswered (`hold`, or `POST /_control {"hold": {...}}`): its body
has arrived, its sender waits for the answer until the test releases it, as a POST in flight does.
CLI: `python -m trading.sim.traderspost --port 8766 [--record FILE.jsonl]`.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path

from trading.sim.httpstandin import HttpStandIn, answer, run_cli

ACTIONS = {"buy", "sell", "exit", "cancel", "add"}
TIF = {"day", "gtc", "opg", "cls", "ioc", "fok"}


def validate(order) -> str:
    """The reason TradersPost would refuse this order body, or "" when it is acceptable."""
    if not isinstance(order, dict):
        return "body must be a JSON object"
    for name in ("ticker", "action"):
        if not order.get(name) or not isinstance(order[name], str):
            return f"{name} is required"
    if order["action"] not in ACTIONS:
        return f"invalid action {order['action']!r}"
    qty = order.get("quantity")
    if qty is not None and (isinstance(qty, bool) or not isinstance(qty, (int, float)) or not math.isfinite(qty)
                            or qty <= 0):
        return "quantity must be a positive number"
    if order.get("timeInForce") not in (None, *TIF):
        return f"invalid timeInForce {order.get('timeInForce')!r}"
    return ""


def order_summary(order) -> str:
    """An order on one line for the stand-in's page, e.g. "buy 1 MESZ4 market @ 5000.25 day · SL 4990 · ibs_a";
    "" when the body is not an order object."""
    if not isinstance(order, dict):
        return ""
    price = next((order[k] for k in ("limitPrice", "stopPrice", "price", "signalPrice") if order.get(k) is not None),
                 None)
    parts = [order.get("action"), order.get("quantity"), order.get("ticker"), order.get("orderType"),
             None if price is None else f"@ {price}", order.get("timeInForce")]
    line = " ".join(str(p) for p in parts if p not in (None, ""))
    for label, name in (("SL", "stopLoss"), ("TP", "takeProfit")):
        leg = order.get(name)
        if isinstance(leg, dict):
            value = next((leg[k] for k in ("stopPrice", "limitPrice", "amount") if leg.get(k) is not None), None)
            value = f"{leg['percent']}%" if value is None and leg.get("percent") is not None else value
            line += f" · {label} {value}" if value is not None else ""
    extras = order.get("extras")
    if isinstance(extras, dict) and extras.get("strategy"):
        line += f" · {extras['strategy']}"
    return line


class Hold:
    """One order held unanswered: the first valid order whose body has every field of `where` (a dotted name
    reaches into a nested object: "extras.strategy"), after `skip` such orders went through. `arrived` is set
    once it is held (its body in `order`); it is answered as usual when released, or after `timeout` s."""

    def __init__(self, where: dict, skip: int = 0, timeout: float = 120.0):
        self.where, self.skip, self.timeout = dict(where), int(skip), float(timeout)
        self.arrived, self.released = threading.Event(), threading.Event()
        self.order: dict | None = None

    def matches(self, order: dict) -> bool:
        for name, want in self.where.items():
            value = order
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value != want:
                return False
        return True

    def release(self) -> None:
        self.released.set()

    def describe(self) -> dict:
        return {"where": self.where, "skip": self.skip, "held": self.arrived.is_set(),
                "released": self.released.is_set()}


def rate_limited(retry_after: float = 60.0) -> dict:
    """A scripted 429 with a Retry-After header."""
    return answer(429, {"success": False, "message": "Too many requests"}, {"Retry-After": f"{retry_after:g}"})


class TradersPostStandIn(HttpStandIn):
    name = "traderspost-standin"
    default_port = 8766
    noun = "order"

    def __init__(self, port: int = 0, record: Path | None = None, model_positions: bool = True):
        self.model_positions = model_positions
        self.positions: dict[tuple[str, str], int] = {}
        self.holds: list[Hold] = []
        super().__init__(port, record)  # replays `record`: the positions of an earlier run are held again

    def orders(self, status: int | None = 200) -> list[dict]:
        """Bodies received, only those answered `status` (None: all)."""
        return [e["order"] for e in self.snapshot() if status is None or e["status"] == status]

    def reset(self) -> None:
        super().reset()
        self.release_holds()
        with self._lock:
            self.positions.clear()

    def stop(self) -> None:
        self.release_holds()
        super().stop()

    def hold(self, where: dict, *, skip: int = 0, timeout: float = 120.0) -> Hold:
        """Hold the next valid order matching `where` (after `skip` matches) unanswered until released."""
        held = Hold(where, skip, timeout)
        with self._lock:
            self.holds.append(held)
        return held

    def release_holds(self) -> None:
        with self._lock:
            holds, self.holds = self.holds, []
        for held in holds:
            held.release()

    def control(self, command: dict) -> dict:
        """`POST /_control` also takes {"hold": {"where": {...}, "skip": n}} and {"release": true}."""
        if command.get("release"):
            self.release_holds()
        if "hold" in command:
            spec = command["hold"]
            if not isinstance(spec, dict) or not isinstance(spec.get("where"), dict):
                raise ValueError('a hold is {"where": {field: value, ...}, "skip": n}')
            self.hold(spec["where"], skip=spec.get("skip", 0), timeout=spec.get("timeout", 120.0))
        state = super().control({k: v for k, v in command.items() if k not in ("hold", "release")})
        with self._lock:
            return {**state, "holds": [h.describe() for h in self.holds]}

    def _held(self, order: dict) -> Hold | None:
        """The hold this order is the chosen one of, counting it against the holds still waiting."""
        with self._lock:
            for held in self.holds:
                if held.order is None and not held.released.is_set() and held.matches(order):
                    if held.skip:
                        held.skip -= 1
                        return None
                    held.order = order
                    return held
        return None

    def summary(self, entry: dict) -> str:
        return order_summary(entry.get("body")) or super().summary(entry)

    def reject(self, entry: dict):
        order = entry["order"] = entry["body"]
        if not entry["json"]:
            return 400, {"success": False, "message": "invalid JSON"}, {}
        problem = validate(order)
        if problem:
            return 400, {"success": False, "message": problem}, {}
        if self.model_positions and order["action"] == "exit" and not self.positions.get(self._key(entry)):
            return 400, {"success": False, "message": "No open position to exit"}, {}
        return None

    def accept(self, entry: dict):
        held = self._held(entry["body"])
        if held is not None:  # this request's thread waits; other requests are answered meanwhile
            held.arrived.set()
            held.released.wait(held.timeout)
        return 200, {"success": True, "id": len(self.received) + 1, "logId": f"sim-{len(self.received) + 1}"}, {}

    def answered(self, entry: dict, status: int) -> None:
        if not (200 <= status < 300) or not isinstance(entry["body"], dict):
            return
        order, key = entry["body"], self._key(entry)
        with self._lock:
            if order.get("action") in ("buy", "add"):
                self.positions[key] = self.positions.get(key, 0) + int(order.get("quantity") or 1)
            elif order.get("action") == "exit":
                self.positions[key] = 0

    @staticmethod
    def _key(entry: dict) -> tuple[str, str]:
        return entry["path"], entry["body"]["ticker"]


def main(argv=None) -> int:
    return run_cli(TradersPostStandIn, argv, prog="python -m trading.sim.traderspost",
                   description=__doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())

"""Builders for in-process trading tests: the demo strategies against real Redis, the database and the
TradersPost stand-in over HTTP — bars into the streams, positions the broker holds, a worker."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from django.core.management import call_command

from strategies.bars import Bar
from trading.config import resolve
from trading.execution.traderspost import deliver, order_payload
from trading.execution.worker import Worker
from trading.marketdata import streams
from trading.models import Position, Signal, Strategy, StrategyInstrument, signal_key

UTC = timezone.utc
T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # Tuesday 01:00 UTC, inside the entry window
SIGNAL = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1: an entry
EXIT = (99.5, 99.9, 99.1, 99.8)  # IBS 0.875: an IBS exit
MID = (100.0, 100.4, 99.6, 100.0)  # IBS 0.5: neither
CONTRACTS = {"CL": "CLZ6", "GC": "GCZ6", "SI": "SIZ6", "6A": "6AZ6"}


def order_root(order: dict) -> str:
    """The root an order was decided for (its ticker names the contract): from its signal id."""
    return order["extras"]["signal_id"].split(":")[1]


def demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, *, roots=("CL",), ml=False) -> Strategy:
    """load_demo with both strategies' broker webhooks at the stand-in; ibs_a trades only `roots`."""
    settings.REDIS_PREFIX = redis_prefix
    settings.RUNTIME_DIR = tmp_path
    for name in ("A", "B"):
        monkeypatch.setenv(f"TRADERSPOST_IBS_{name}_WEBHOOK", f"{broker.url}/trading/webhook/desk-{name.lower()}-token")
    call_command("load_demo")
    legs = StrategyInstrument.objects.filter(strategy__name="ibs_a")
    legs.exclude(instrument__root__in=roots).update(enabled=False)
    legs.update(ml_enabled=ml)
    Strategy.objects.filter(name="ibs_a").update(daily_stop_loss=10**6)
    return Strategy.objects.get(name="ibs_a")


def publish_hours(rows, start: datetime = T0, root: str = "CL") -> datetime:
    """Hourly bars (open, high, low, close) from `start`, each followed by the watermark past it."""
    ts = start
    for i, (o, h, l, c) in enumerate(rows):
        ts = start + timedelta(hours=i)
        streams.publish(Bar(root, CONTRACTS.get(root, root), "1h", ts, o, h, l, c, 100, 10))
        streams.set_watermark(int((ts + timedelta(hours=1)).timestamp()) * 10**9)
    return ts + timedelta(hours=1)


def publish_minute(root: str, close: float, ts: datetime) -> Bar:
    """A 1-minute bar: the market's last price the hub publishes (what an order sent now is priced at)."""
    bar = Bar(root, CONTRACTS.get(root, root), "1m", ts, close, close, close, close, 10, 1)
    streams.publish(bar)
    return bar


def running_worker(name: str = "ibs_a") -> Worker:
    w = Worker(name, block_ms=10)
    w.setup()
    return w


def held_position(strategy: Strategy, root: str, *, entry: float, size: int = 1, at: datetime = T0) -> Position:
    """A filled position the broker holds: its entry delivered to the strategy's webhook (the stand-in
    then holds it too), stop and target 1 % away."""
    leg = strategy.legs.select_related("instrument").get(instrument__root=root)
    key = signal_key(strategy.name, root, at, "buy")
    payload = order_payload(ticker=leg.broker_ticker(CONTRACTS.get(root, ""), at), action="buy", quantity=size,
                            signal_price=entry,
                            extras={"strategy": strategy.name, "signal_id": key, "reason": "entry"})
    assert deliver(resolve(strategy.broker_webhook, "broker_webhook"), payload).delivered
    sig = Signal.objects.create(key=key, strategy=strategy, instrument=leg.instrument,
                                contract=CONTRACTS.get(root, ""), bar_time=at, action="buy", quantity=size,
                                signal_price=Decimal(str(entry)), reason="entry", state="sent", payload=payload)
    e = Decimal(str(entry))
    return Position.objects.create(
        strategy=strategy, instrument=leg.instrument, contract=CONTRACTS.get(root, ""), size=size, filled=True,
        signal_time=at, entry_time=at + timedelta(hours=1), entry_price=e, stop_price=e * Decimal("0.99"),
        target_price=e * Decimal("1.01"), ibs_entry=0.1, commission_per_side=leg.commission_per_side,
        point_value=leg.instrument.point_value, entry_signal=sig)


class HeldBack:
    """A worker's sender holding its orders back (a slow broker, or a catch-up deciding hours faster than they
    are sent): they stay in the outbox, unsent."""

    def start(self, strategy): ...
    def send_now(self, strategy, signals): ...
    def pump(self, strategy): ...
    def stop(self, strategy): ...

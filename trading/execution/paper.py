"""The built-in paper broker: where a paper strategy's orders go instead of TradersPost.

It takes each order as TradersPost would (the same payload), records it as a PaperOrder, and answers at
once. The fills are the books' modelled fills, the backtest's fill model (entry at the next bar's open,
stop and target on the 1-minute bars, exits at the decision bar's close), which the worker books for every
strategy. Nothing here opens a connection: a paper order has no URL to go to.
"""
from __future__ import annotations

from datetime import datetime

from trading.delivery.outcomes import Outcome
from trading.execution.traderspost import DeliveryResult
from trading.models import PaperOrder, Position, Signal, Trade

HOOK = "paper"  # what the attempt log shows where a webhook's fingerprint would be


def deliver(sig: Signal, at: datetime) -> DeliveryResult:
    """Take the order (once: a resend finds it taken) and answer as a broker that accepted it."""
    order, created = PaperOrder.objects.get_or_create(signal=sig, defaults={"received_at": at, "payload": sig.payload})
    body = "paper broker: order taken" if created else "paper broker: order already taken"
    return DeliveryResult(Outcome.DELIVERED, status_code=200, body=body, hook=HOOK)


def fill_of(order: PaperOrder) -> tuple | None:
    """(time, price) of a paper order's fill in the books (the modelled fill), None while unfilled."""
    if order.signal.action == Signal.Action.BUY:
        return Position.objects.filter(entry_signal=order.signal, filled=True).values_list(
            "entry_time", "entry_price").first()
    return Trade.objects.filter(exit_signal=order.signal).values_list("exit_time", "exit_price").first()

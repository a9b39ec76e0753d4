"""Risk decisions as typed values: may this order go out now, and if not, which control said so.

Every caller (the worker at its decision, the ledger writing a step, the sender just before a POST)
branches on `RiskDecision.kind`, never on the text of `reason`, which is for people. A refused
entry is recorded with its control; an exit is never refused, only held (full halt).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from trading.models import KillSwitch, RiskControl

Mode = KillSwitch.Mode


class Kind(enum.Enum):
    ALLOW = "allow"
    BLOCK_ENTRY = "block_entry"  # a buy that must not reach the broker: recorded as a BLOCKED signal
    HOLD_EXIT = "hold_exit"  # an exit kept back (full halt): the position stays open, sent when it lifts


@dataclass(frozen=True)
class RiskDecision:
    kind: Kind
    control: str = ""  # a RiskControl value; "" when allowed
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.kind is Kind.ALLOW


ALLOW = RiskDecision(Kind.ALLOW)


@dataclass(frozen=True)
class KillState:
    """The effective killswitch mode and where it comes from (admin row, environment, unreadable)."""
    mode: str
    control: str = RiskControl.KILLSWITCH
    detail: str = ""

    @property
    def halted(self) -> bool:
        return self.mode == Mode.HALT


def block_entry(control: str, reason: str) -> RiskDecision:
    return RiskDecision(Kind.BLOCK_ENTRY, control, reason)


def order_decision(action: str, kill: KillState) -> RiskDecision:
    """The killswitch's answer for an order with `action` ('buy' or 'exit') under `kill`."""
    source = "POLICY_KILLSWITCH" if kill.control == RiskControl.ENV_OVERRIDE else "killswitch"
    if kill.control == RiskControl.UNREADABLE and action == "buy":
        return block_entry(kill.control, f"killswitch state unreadable ({kill.detail}); entries blocked")
    if kill.mode == Mode.HALT:
        if action == "exit":
            return RiskDecision(Kind.HOLD_EXIT, kill.control,
                                f"{source}: full halt holds the exit; it is sent when the halt lifts")
        return block_entry(kill.control, f"{source}: full halt blocks every order")
    if action == "buy" and kill.mode in (Mode.ENTRIES, Mode.FLATTEN):
        return block_entry(kill.control, f"{source}: {kill.mode} mode blocks entries")
    return ALLOW

"""Trading models, one module per concept."""
from .backtests import BacktestRun
from .bars import StoredBar
from .drift import DriftItem, DriftReport
from .instruments import Contract, ContractRoll, Instrument
from .ops import ConfigRevision, Heartbeat, Notification, WorkerCursor
from .signals import DeliveryAttempt, PaperOrder, Signal, signal_key
from .risk import DailyRiskState, KillSwitch, KillSwitchEvent, RiskControl
from .strategies import Strategy, StrategyInstrument
from .trades import Position, Trade, pnl_percent, trade_pnl

__all__ = [
    "BacktestRun", "ConfigRevision", "Contract", "ContractRoll", "DailyRiskState", "DeliveryAttempt", "DriftItem", "DriftReport", "Heartbeat", "Instrument", "KillSwitch",
    "KillSwitchEvent", "Notification", "PaperOrder", "Position", "RiskControl", "Signal", "Strategy", "StrategyInstrument", "StoredBar", "Trade", "WorkerCursor",
    "pnl_percent", "signal_key", "trade_pnl",
]

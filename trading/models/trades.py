"""Open positions and closed trades, as modelled by the worker.

TradersPost reports no fills, so these rows are the modelled trades; P&L uses the
instrument's point value and the leg's commission. Open positions are rows, so a restart
resumes them; one open position per strategy and instrument is a database constraint. A
position becomes a trade only once its exit reached the broker (or the broker's own bracket
closed it): the books never show flat what the broker may still hold.
"""
from decimal import Decimal

from django.db import models

from strategies import pnl as strategies_pnl

from .instruments import Instrument
from .signals import Signal
from .strategies import Strategy

PRICE = dict(max_digits=20, decimal_places=9)
MONEY = dict(max_digits=14, decimal_places=2)


def trade_pnl(entry: Decimal, exit_: Decimal, point_value: Decimal, size: int, commission: Decimal) -> Decimal:
    """P&L of a long trade in $ to the cent, by the one money rule of strategies.pnl (the backtest's)."""
    return strategies_pnl.trade_money(entry, exit_, point_value, size, commission)


def pnl_percent(entry: Decimal, exit_: Decimal) -> float:
    return strategies_pnl.pnl_percent(Decimal(entry), Decimal(exit_))


class PositionQuerySet(models.QuerySet):
    def open(self):
        """Positions the broker holds or may hold (an exit not yet confirmed included)."""
        return self.filter(state__in=Position.OPEN_STATES)

    def managed(self):
        """Positions a worker manages: at most one per strategy and instrument."""
        return self.filter(state__in=Position.MANAGED_STATES)


class Position(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "open"
        CLOSING = "closing", "closing (exit decided, on its way to the broker)"
        EXIT_HELD = "exit_held", "exit held (full halt; sent when the halt lifts)"
        EXITED = "exited", "exited at the modelled fill; a trade once the broker confirms the exit"
        CLOSED = "closed", "closed"
        CANCELLED = "cancelled", "cancelled (entry never reached the broker)"

    MANAGED_STATES = (State.OPEN, State.CLOSING, State.EXIT_HELD)
    OPEN_STATES = (*MANAGED_STATES, State.EXITED)
    objects = PositionQuerySet.as_manager()

    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="positions")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="positions")
    contract = models.CharField(max_length=16, blank=True)
    side = models.CharField(max_length=5, default="long")
    size = models.PositiveIntegerField()
    signal_time = models.DateTimeField(help_text="Start of the bar whose close signalled the entry")
    filled = models.BooleanField(default=False, help_text="The modelled fill (next bar's open) is known")
    entry_time = models.DateTimeField(help_text="Modelled fill time (open of the bar after the signal)")
    entry_price = models.DecimalField(**PRICE, help_text="Modelled fill; the signal price until filled")
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    target_price = models.DecimalField(**PRICE, null=True, blank=True)
    bars_held = models.PositiveIntegerField(default=0)
    ibs_entry = models.FloatField(null=True, blank=True)
    ml_score = models.FloatField(null=True, blank=True)
    commission_per_side = models.DecimalField(max_digits=8, decimal_places=2)
    point_value = models.DecimalField(max_digits=18, decimal_places=6)
    entry_signal = models.OneToOneField(Signal, on_delete=models.PROTECT, related_name="opened_position")
    exit_signal = models.OneToOneField(Signal, on_delete=models.PROTECT, related_name="closed_position", null=True,
                                       blank=True)
    exit_reason = models.CharField(max_length=32, blank=True)
    ibs_exit = models.FloatField(null=True, blank=True)
    exit_time = models.DateTimeField(null=True, blank=True,
                                     help_text="Modelled exit fill, booked as a trade once the exit is delivered")
    exit_price = models.DecimalField(**PRICE, null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-entry_time"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "instrument"],
                                    condition=models.Q(state__in=["open", "closing", "exit_held"]),
                                    name="one_open_position_per_instrument"),
        ]
        indexes = [models.Index(fields=["strategy", "state"])]

    def __str__(self):
        return f"{self.strategy.name} {self.instrument.root} {self.side} {self.size} @ {self.entry_price}"


class Trade(models.Model):
    class ExitVia(models.TextChoices):
        ORDER = "order", "exit order delivered"
        BRACKET = "bracket", "the broker's bracket (stop or target sent with the entry)"

    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="trades")
    symbol = models.CharField(max_length=8, help_text="Instrument root")
    contract = models.CharField(max_length=16, blank=True)
    side = models.CharField(max_length=5, default="long")
    entry_time = models.DateTimeField()
    entry_price = models.DecimalField(**PRICE)
    entry_size = models.PositiveIntegerField()
    exit_time = models.DateTimeField()
    exit_price = models.DecimalField(**PRICE)
    exit_size = models.PositiveIntegerField()
    pnl = models.DecimalField(**MONEY)
    pnl_percent = models.FloatField()
    exit_reason = models.CharField(max_length=32)
    exit_via = models.CharField(max_length=8, choices=ExitVia.choices, default=ExitVia.ORDER)
    ml_score = models.FloatField(null=True, blank=True)
    ibs_entry = models.FloatField(null=True, blank=True)
    ibs_exit = models.FloatField(null=True, blank=True)
    commission = models.DecimalField(**MONEY, help_text="Total commission of the round trip ($)")
    point_value = models.DecimalField(max_digits=18, decimal_places=6)
    session_date = models.DateField(help_text="CME trading day of the exit")
    entry_signal = models.ForeignKey(Signal, on_delete=models.PROTECT, related_name="+")
    exit_signal = models.OneToOneField(Signal, on_delete=models.PROTECT, related_name="closed_trade",
                                       null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-exit_time", "-id"]
        indexes = [
            models.Index(fields=["-exit_time", "-id"], name="trade_list_order"),
            models.Index(fields=["strategy", "-exit_time"]),
            models.Index(fields=["strategy", "session_date"]),
            # The list's symbol and exit-reason filters in its order; their P&L too, so the totals of what
            # such a filter selects are summed from the index alone.
            models.Index(fields=["symbol", "-exit_time", "-id", "pnl"], name="trade_symbol_order"),
            models.Index(fields=["exit_reason", "-exit_time", "-id", "pnl"], name="trade_reason_order"),
            models.Index(fields=["session_date"], name="trade_session"),  # the list's session filter, any strategy
        ]
        constraints = [models.UniqueConstraint(fields=["entry_signal"], name="one_trade_per_entry")]

    def __str__(self):
        return f"{self.strategy.name} {self.symbol} {self.entry_time:%Y-%m-%d %H:%M} {self.pnl}"

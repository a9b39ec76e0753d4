"""Rows for tests: a closed trade with its entry signal, counted in its day as the product books one."""
import itertools
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

from trading.models import Signal, Trade
from trading.risk.daily import record_realized

_serial = itertools.count()


def make_trade(strategy, *, session_date, pnl, root="CL", size=1) -> Trade:
    n = next(_serial)
    exit_time = datetime.combine(session_date, time(15), tzinfo=timezone.utc) - timedelta(minutes=n)
    instrument = strategy.legs.get(instrument__root=root).instrument
    sig = Signal.objects.create(key=f"{strategy.name}:{root}:test-{n}:buy", strategy=strategy,
                                instrument=instrument, bar_time=exit_time - timedelta(hours=4), action="buy",
                                quantity=size, signal_price=Decimal("70"), reason="entry")
    trade = Trade.objects.create(strategy=strategy, symbol=root, entry_time=exit_time - timedelta(hours=3),
                                 entry_price=Decimal("70"), entry_size=size, exit_time=exit_time,
                                 exit_price=Decimal("70.25"), exit_size=size, pnl=pnl, pnl_percent=0.3,
                                 exit_reason="ibs_exit", commission=Decimal("2.5"), point_value=Decimal("1000"),
                                 session_date=session_date, entry_signal=sig)
    record_realized(strategy, session_date, trade.pnl)  # the daily summary, as trading.execution.exits books it
    return trade

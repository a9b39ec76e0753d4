"""Bad input reaching the hub is counted and logged; it never crashes the hub or makes a bar."""
from datetime import datetime, timezone

import databento_dbn as dbn

from trading.marketdata.hub import Hub
from trading.marketdata.roll import FrontMonth

T0 = int(datetime(2026, 11, 3, 14, 0, tzinfo=timezone.utc).timestamp()) * 10**9
MIN = 60 * 10**9


def hub():
    published = []
    h = Hub({"CL": FrontMonth("CL", active="CLZ6")}, publish=lambda bar: published.append(bar))
    for iid, sym in ((1, "CLZ6"), (2, "CLF7"), (3, "CLZ6-CLF7"), (4, "ZZZ9")):
        parent = "ZZZ.FUT" if sym == "ZZZ9" else "CL.FUT"
        h.process(dbn.SymbolMappingMsg(1, iid, T0, dbn.SType.PARENT, parent, dbn.SType.RAW_SYMBOL, sym, T0, T0))
    return h, published


def trade(iid, ts, price):
    return dbn.TradeMsg(1, iid, ts, price, 1, dbn.Action.TRADE, dbn.Side.BID, 0, ts, flags=0x80)


def test_bad_records_are_counted_and_make_no_bar():
    h, published = hub()
    h.process(trade(1, T0 + 1, 75_000_000_000))
    h.process(trade(1, T0 + 2, dbn.UNDEF_PRICE))
    h.process(trade(1, T0 + 3, 0))
    h.process(trade(3, T0 + 4, -10_000_000))  # a spread
    h.process(trade(2, T0 + 5, 75_500_000_000))  # a back month
    h.process(trade(4, T0 + 6, 1_000_000_000))  # a symbol not configured
    h.process(trade(99, T0 + 7, 1_000_000_000))  # never mapped
    h.process(trade(1, T0 + MIN + 1, 75_100_000_000))  # closes the first minute
    h.process(trade(1, T0 + 10, 74_000_000_000))  # time going backwards into a built minute
    c = h.counters
    assert (c["bad_price"], c["spreads_dropped"], c["back_month_dropped"], c["unknown_symbol"], c["unmapped"],
            c["out_of_order"]) == (2, 1, 1, 1, 1, 1)
    assert [(b.timeframe, b.open, b.high, b.low, b.close, b.trades) for b in published] == [
        ("1m", 75.0, 75.0, 75.0, 75.0, 1)]


def test_heartbeat_time_closes_bars_without_new_trades():
    h, published = hub()
    h.process(trade(1, T0 + 1, 75_000_000_000))
    h.process(dbn.SystemMsg(T0 + 61 * MIN, "Heartbeat", code=dbn.SystemCode.HEARTBEAT))
    assert [b.timeframe for b in published] == ["1m", "1h"]


def test_a_late_trade_behind_the_open_minute_is_counted_not_raised():
    """CL has no bar at 14:01; a trade at 14:02 opens one; a CL trade stamped 14:01 arriving after it
    lies after the last built minute but before the open one: dropped and counted, never a crash
    (it used to raise out of the hub) and never a bar for 14:01."""
    h, published = hub()
    h.process(trade(1, T0 + 1, 75_000_000_000))
    h.process(trade(1, T0 + 2 * MIN + 5, 75_100_000_000))  # closes 14:00, opens 14:02
    for batched in (False, True):
        late = trade(1, T0 + MIN + 30 + batched, 74_000_000_000)
        h.process_many([late]) if batched else h.process(late)
    h.process(dbn.SystemMsg(T0 + 3 * MIN, "Heartbeat", code=dbn.SystemCode.HEARTBEAT))
    assert h.counters["out_of_order"] == 2
    assert [(b.ts.minute, b.low) for b in published if b.timeframe == "1m"] == [(0, 75.0), (2, 75.1)]


def test_a_trade_without_a_time_is_dropped_and_the_clock_stays():
    """UNDEF_TIMESTAMP (or any stamp past 2**63 ns) would move the clock centuries ahead, close every
    bar and make each later trade "out of order": it is dropped and counted instead."""
    h, published = hub()
    h.process(trade(1, T0 + 1, 75_000_000_000))
    h.process_many([trade(1, dbn.UNDEF_TIMESTAMP, 75_000_000_000)] * 20)  # the batch path too
    h.process(trade(1, dbn.UNDEF_TIMESTAMP, 75_000_000_000))
    h.process(trade(1, T0 + MIN + 1, 75_100_000_000))
    h.process(dbn.SystemMsg(T0 + 2 * MIN, "Heartbeat", code=dbn.SystemCode.HEARTBEAT))
    assert h.counters["bad_time"] == 21 and h.counters["out_of_order"] == 0 and h.clock == T0 + 2 * MIN
    assert [(b.ts.minute, b.close) for b in published if b.timeframe == "1m"] == [(0, 75.0), (1, 75.1)]

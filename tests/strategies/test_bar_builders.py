"""The streaming bar builders and the bar message: the fast paths the hub uses give exactly what
the plain ones give (json.dumps for the message, one trade at a time for a minute)."""
import json
import random
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.bars import NS, Bar, BarError, DailyAggregator, HourlyAggregator, MinuteBarBuilder

UTC = timezone.utc


def reference_message(bar: Bar) -> str:
    return json.dumps({"symbol": bar.symbol, "contract": bar.contract, "timeframe": bar.timeframe,
                       "ts": bar.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "open": bar.open,
                       "high": bar.high, "low": bar.low, "close": bar.close, "volume": bar.volume,
                       "trades": bar.trades}, separators=(",", ":"))


prices = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                   st.sampled_from([70.12, 0.1 + 0.2, 1e-9, 5e20, -0.0, 1.7e308]))


@settings(max_examples=400, deadline=None)
@given(symbol=st.text(min_size=1, max_size=4), contract=st.sampled_from(["CLZ6", 'E"S', "ZN\\H7"]),
       timeframe=st.sampled_from(["1m", "1h", "1d"]),
       seconds=st.integers(0, 4 * 10**9), whole_minute=st.booleans(), micro=st.sampled_from([0, 0, 7]),
       ohlc=st.tuples(prices, prices, prices, prices), volume=st.integers(0, 10**15), trades=st.integers(0, 10**6))
def test_the_message_is_what_json_dumps_writes(symbol, contract, timeframe, seconds, whole_minute, micro, ohlc,
                                               volume, trades):
    seconds = seconds - seconds % 60 if whole_minute else seconds
    ts = datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micro)
    bar = Bar(symbol, contract, timeframe, ts, *ohlc, volume, trades)
    assert bar.to_message() == reference_message(bar)


def test_a_bar_made_fast_is_the_same_frozen_bar():
    ts = datetime(2026, 11, 3, 14, tzinfo=UTC)
    fast = Bar.make("CL", "CLZ6", "1m", ts, 70.0, 71.0, 69.0, 70.5, 10, 3)
    assert fast == Bar("CL", "CLZ6", "1m", ts, 70.0, 71.0, 69.0, 70.5, 10, 3) and hash(fast)
    try:
        fast.close = 1.0
    except AttributeError:
        pass
    else:
        raise AssertionError("a bar made by Bar.make must stay frozen")


def test_a_minute_pushed_at_once_equals_its_trades_one_by_one():
    rng = random.Random(3)
    t0 = int(datetime(2026, 11, 3, 14, tzinfo=UTC).timestamp()) * NS
    for _ in range(200):
        one, many = MinuteBarBuilder("CL"), MinuteBarBuilder("CL")
        out_one, out_many = [], []
        minute = t0
        for _ in range(rng.randrange(1, 6)):
            minute += rng.randrange(1, 3) * 60 * NS
            trades = [(minute + rng.randrange(60 * NS), round(rng.uniform(60, 80), 2), rng.randrange(1, 9),
                       rng.choice(["CLZ6", "CLF7"])) for _ in range(rng.randrange(1, 12))]
            for ts, price, size, contract in trades:
                out_one += one.push(ts, price, size, contract)
            ps = [p for _, p, _, _ in trades]
            out_many += many.push_minute(minute, max(t for t, *_ in trades), ps[0], max(ps), min(ps), ps[-1],
                                         sum(s for _, _, s, _ in trades), len(trades), trades[-1][3])
        assert out_many == out_one and many._bar == one._bar and many.last_ts == one.last_ts
        assert many.close_through(minute + 60 * NS) == one.close_through(minute + 60 * NS)


def test_a_trade_before_the_open_minute_is_refused():
    builder = MinuteBarBuilder("CL")
    builder.push(120 * NS, 70.0, 1, "CLZ6")
    try:
        builder.push(59 * NS, 70.0, 1, "CLZ6")
    except BarError as exc:
        assert "older than the open minute" in str(exc)
    else:
        raise AssertionError("an older trade must be refused")


def test_hours_and_sessions_close_by_datetime_or_ns_alike():
    """The hub closes aggregates with ns, other callers with datetimes: the same bars either way,
    and `due_ns` says when the next one completes."""
    start = datetime(2026, 11, 3, 20, 30, tzinfo=UTC)  # 14:30 Chicago; the session closes at 22:00 UTC
    bars = [Bar("CL", "CLZ6", "1m", start + timedelta(minutes=i), 70.0 + i / 100, 70.5 + i / 100, 69.5, 70.2,
                1, 1) for i in range(0, 85, 7)]
    results = []
    for as_ns in (False, True):
        hours, days, out = HourlyAggregator(), DailyAggregator(), []
        for bar in bars:
            out += hours.push(bar) + days.push(bar)
        due = datetime(2026, 11, 3, 22, tzinfo=UTC)
        assert days.due_ns == int(due.timestamp()) * NS
        assert hours.due_ns == int(datetime(2026, 11, 3, 22, tzinfo=UTC).timestamp()) * NS
        when = (lambda dt: int(dt.timestamp()) * NS) if as_ns else (lambda dt: dt)
        assert hours.close_through(when(due - timedelta(seconds=1))) == []
        out += hours.close_through(when(due)) + days.close_through(when(due))
        results.append(out)
    assert results[0] == results[1]
    assert [(b.timeframe, b.ts.hour) for b in results[0]] == [("1h", 20), ("1h", 21), ("1d", 0)]
    assert results[0][-1].volume == len(bars) and results[0][-1].high == bars[-1].high

"""The hub's bar-store writes, off its hot path: hourly and daily bars reach the bar store from the writer's own
thread, a contract held after its roll under its own name (as its streams), nothing written twice, and the
bars kept while the database is away."""
from datetime import datetime, timedelta, timezone

import pytest

from strategies.bars import Bar, HeldBar
from tests.marketdata.test_held_contracts import held_hub
from tests.marketdata.test_hub_batch import stream
from trading.marketdata.barstore import load_frame
from trading.marketdata.storewriter import BarStoreWriter, write_bars
from trading.models import StoredBar

pytestmark = pytest.mark.django_db(transaction=True)  # the writer's thread has its own connection
T0 = datetime(2026, 11, 3, 14, tzinfo=timezone.utc)


def hour(i, root="CL", contract="CLZ6", cls=Bar):
    return cls.make(root, contract, "1h", T0 + timedelta(hours=i), 70 + i, 71 + i, 69 + i, 70.5 + i, 100, 30)


def first_of_each_hour(bars):
    """What a stream keeps: the random stream trades through the weekend, where a session's end splits an hour
    in two bars of one start; the stream refuses the second, and so does the bar store."""
    out = {}
    for bar in bars:
        out.setdefault(bar.ts, bar)
    return list(out.values())


def test_hourly_and_daily_bars_are_stored_by_the_writers_thread_once():
    writer = BarStoreWriter()
    try:
        minute = Bar("CL", "CLZ6", "1m", T0, 70, 71, 69, 70.5, 10, 3)
        day = Bar("CL", "CLZ6", "1d", datetime(2026, 11, 3, tzinfo=timezone.utc), 70, 75, 68, 72, 2400, 700)
        for bar in (minute, *(hour(i) for i in range(5)), day, hour(2)):  # hour 2 twice: a takeover's replay
            writer.put(bar)
        assert writer.drain(10)
    finally:
        writer.close()
    assert list(StoredBar.objects.filter(root="CL", timeframe="1h").values_list("ts", flat=True)) == [
        T0 + timedelta(hours=i) for i in range(5)]
    assert StoredBar.objects.filter(root="CL", timeframe="1d").count() == 1
    assert not StoredBar.objects.filter(timeframe="1m").exists() and writer.written == 7


def test_a_burst_is_written_in_one_statement_and_a_drain_does_not_wait_out_the_gathering():
    """A replay's hours come back to back: the writer gathers them into one write (one transaction, one thread
    switch) instead of one per bar, and a drain (the hub stopping) writes them at once."""
    calls = []
    writer = BarStoreWriter(write=lambda bars: calls.append(list(bars)), gather=60)
    try:
        for i in range(50):
            writer.put(hour(i))
        assert writer.drain(10)  # well before the 60 s of gathering
    finally:
        writer.close()
    assert calls == [[hour(i) for i in range(50)]] and writer.written == 50


def test_the_bars_wait_while_the_database_is_away_and_are_written_when_it_is_back():
    calls = []

    def flaky(bars):
        calls.append(len(bars))
        if len(calls) < 3:
            raise ConnectionError("database away")
        write_bars(bars)

    writer = BarStoreWriter(retry_every=0.05, write=flaky)
    try:
        for i in range(4):
            writer.put(hour(i))
        assert writer.drain(10)
    finally:
        writer.close()
    assert calls[:2] == [4, 4] and writer.failures == 0  # tried, kept, tried again: nothing lost
    assert StoredBar.objects.filter(root="CL", timeframe="1h").count() == 4


def test_a_contract_held_after_its_roll_keeps_its_own_bars_in_the_bar_store():
    """Issue 18's gap: after CL rolls from CLZ6 to CLF7 with a position open in CLZ6, the bar store keeps the
    new front's hours under CL and the held contract's under CLZ6, so warmup and backtests of the held
    position read its own prices."""
    hub, published, rolls = held_hub({"CL": {"CLZ6"}})
    for rec in stream(seed=1, hours=80):
        hub.process(rec)
    assert [(r.from_contract, r.to_contract) for r in rolls] == [("CLZ6", "CLF7")]
    writer = BarStoreWriter()
    try:
        for bar in published:
            writer.put(bar)
        assert writer.drain(20)
    finally:
        writer.close()
    held = first_of_each_hour(b for b in published if isinstance(b, HeldBar) and b.timeframe == "1h")
    front = first_of_each_hour(b for b in published if not isinstance(b, HeldBar) and b.symbol == "CL"
                               and b.timeframe == "1h")
    assert held and front
    frame = load_frame("CLZ6", "1h")
    assert list(frame["ts"]) == [int(b.ts.timestamp()) * 10**9 for b in held]
    assert list(frame["close"]) == [b.close for b in held] and list(frame["volume"]) == [b.volume for b in held]
    assert set(StoredBar.objects.filter(root="CLZ6").values_list("contract", flat=True)) == {"CLZ6"}
    rows = StoredBar.objects.filter(root="CL", timeframe="1h").order_by("ts")
    assert [(r.ts, r.contract, r.close) for r in rows] == [(b.ts, b.contract, b.close) for b in front]
    assert rows.last().contract == "CLF7"  # the root's own hours stay the front's


def test_a_bar_the_store_refuses_is_left_out_named_and_the_others_are_written(caplog):
    """A bar the bar store's constraints refuse (a negative trade count) is data, not an outage: the bars of its
    batch and after it are written, not held behind it, and the refused one is named in the log."""
    bad = Bar.make("CL", "CLZ6", "1h", T0 + timedelta(hours=2), 72, 73, 71, 72.5, 100, -1)
    writer = BarStoreWriter()
    try:
        for bar in (hour(0), hour(1), bad, hour(3)):
            writer.put(bar)
        assert writer.drain(10)
        writer.put(hour(4))  # the writer goes on
        assert writer.drain(10)
    finally:
        writer.close()
    assert list(StoredBar.objects.filter(root="CL", timeframe="1h").values_list("ts", flat=True)) == [
        T0 + timedelta(hours=i) for i in (0, 1, 3, 4)]
    assert writer.written == 4 and writer.failures == 0
    assert any("bar refused by the bar store" in r.getMessage() and (T0 + timedelta(hours=2)).isoformat()
               in r.getMessage() for r in caplog.records)

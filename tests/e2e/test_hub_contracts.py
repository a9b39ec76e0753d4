"""`manage.py runhub` with real processes (local gateway, official client, real Redis): on a fresh
install it trades the real front month from the first trade of Databento's GLBX samples, and a hub
killed inside a holiday session resumes where that session opened, so the session's bars equal an
uninterrupted run's."""
import json
import os
import signal
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import redis

from tests.conftest import glbx_samples
from tests.e2e.appliance import ProcessEnv, wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.test_hub import as_frame, stream_bars
from tests.e2e.trading_setup import configure_ibs_a
from trading.marketdata.dbnfile import read_records
from trading.sim.gateway import Faults, LiveGateway
from trading.sim.market import front_month, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
KEY = "db-" + "e2eHubContractsKey00000000008"
CT = ZoneInfo("America/Chicago")


def test_a_fresh_install_trades_the_real_front_month_from_the_first_trade(tmp_path):
    """No active contract anywhere: the gateway replays the real ESH1 trades with their definition;
    the hub takes ESH1 as the front before its first trade, drops none of them, and records it."""
    gateway = LiveGateway([glbx_samples() / "test_data.trades.dbn.zst"], key=KEY, heartbeat_interval=0.2).start()
    env = ProcessEnv(tmp_path, {"DATABENTO_API_KEY": KEY, "DATABENTO_GATEWAY": f"127.0.0.1:{gateway.port}"})
    try:
        env.migrate_with_demo()
        env.shell("from trading.models import Instrument, Strategy, StrategyInstrument\n"
                  "StrategyInstrument.objects.update(enabled=False)\n"
                  "StrategyInstrument.objects.create(strategy=Strategy.objects.get(name='ibs_a'),"
                  " instrument=Instrument.objects.get(root='ES'), ml_enabled=False)\n"
                  "assert not Instrument.objects.exclude(active_contract='').exists()")
        hub = env.spawn("runhub", "--heartbeat", "0.5", log_name="hub.log")
        client = redis.Redis(decode_responses=True)
        wait_until(lambda: client.xlen(f"{env.redis_prefix}:bars:ES:1d") or hub.poll() is not None, 120, "ES daily bar")
        assert hub.poll() is None, (tmp_path / "hub.log").read_text()[-3000:]
        minutes = [b for _, b in stream_bars(client, env.redis_prefix, "ES", "1m")]
        wait_until(lambda: "ESH1" in (tmp_path / "hub_heartbeat.json").read_text(), 30, "heartbeat with the front")
        beat = json.loads((tmp_path / "hub_heartbeat.json").read_text())
        stored = env.shell_json(
            "import json; from trading.models import Instrument, ContractRoll, Contract, Notification\n"
            "c = Contract.objects.get(instrument__root='ES')\n"
            "print(json.dumps([Instrument.objects.get(root='ES').active_contract,"
            " list(ContractRoll.objects.values_list('from_contract', 'to_contract', 'session_date')),"
            " [c.raw_symbol, c.databento_id, c.expiration.isoformat()],"
            " list(Notification.objects.filter(title__startswith='Front').values_list('title', flat=True))],"
            " default=str))")
        hub.terminate()
        hub.wait(30)
    finally:
        gateway.stop()
        env.cleanup()
    trades = read_records(glbx_samples() / "test_data.trades.dbn.zst").records
    prices = [t.price / 1e9 for t in trades]
    assert [(b.ts, b.contract, b.open, b.high, b.low, b.close, b.volume, b.trades) for b in minutes] == [
        (datetime(2020, 12, 28, tzinfo=timezone.utc), "ESH1", prices[0], max(prices), min(prices), prices[-1],
         sum(t.size for t in trades), len(trades))]  # one minute of all 4 trades
    counters = beat["counters"]
    assert counters["trades"] == 4 and counters.get("back_month_dropped", 0) == 0 and counters.get("no_front", 0) == 0
    assert beat["fronts"] == {"ES": "ESH1"}
    assert stored[0] == "ESH1" and stored[1] == [["", "ESH1", "2020-12-28"]]
    assert stored[2] == ["ESH1", 5482, "2021-03-19T13:30:00+00:00"]
    assert stored[3] == ["Front ES: ESH1"]


ROOTS = ["6A", "CL"]


@pytest.mark.parametrize("holiday, start, days", [
    (datetime(2026, 11, 26, 10, 0, tzinfo=CT), date(2026, 11, 24), 4),  # Thanksgiving, folded into Friday
    (datetime(2027, 1, 18, 10, 0, tzinfo=CT), date(2027, 1, 15), 5),  # Martin Luther King day, into Tuesday
], ids=["thanksgiving", "mlk"])
def test_a_hub_killed_inside_a_holiday_session_rebuilds_that_session_whole(tmp_path, holiday, start, days):
    paths = generate(tmp_path / "market", roots=ROOTS, start=start, days=days, seed=17, trades_per_minute=2.0)
    fronts = {r: front_month(r, start) for r in ROOTS}
    expected = {r: expected_bars(paths[r], fronts[r]) for r in ROOTS}
    kill_ns = int(holiday.timestamp()) * 10**9
    probe = LiveGateway(list(paths.values()), key=KEY)
    stall_at = sum(1 for r in probe.source.records if r.ts < kill_ns and r.schema in ("trades", "definition"))
    probe.stop()
    # The replay stops at 10:00 CT of the holiday (the first record at or after it), as a hub dies there.
    gateway = LiveGateway(list(paths.values()), key=KEY, heartbeat_interval=0.2,
                          faults=Faults(stall_after=stall_at, stall_seconds=600)).start()
    env = ProcessEnv(tmp_path, {"DATABENTO_API_KEY": KEY, "DATABENTO_GATEWAY": f"127.0.0.1:{gateway.port}"})
    client = redis.Redis(decode_responses=True)

    def last_minute(root):
        newest = client.xrevrange(f"{env.redis_prefix}:bars:{root}:1m", count=1)
        return int(newest[0][0].split("-")[0]) * 10**6 if newest else 0

    try:
        env.migrate_with_demo()
        configure_ibs_a(env, fronts)
        hub = env.spawn("runhub", "--heartbeat", "0.5", log_name="hub-0.log")
        wait_until(lambda: all(last_minute(r) >= kill_ns - 10 * 60 * 10**9 for r in ROOTS) or hub.poll() is not None,
                   120, "the hub at 10:00 CT of the holiday")
        assert hub.poll() is None and all(last_minute(r) < kill_ns for r in ROOTS)
        os.killpg(hub.pid, signal.SIGKILL)
        hub.wait(10)
        hub = env.spawn("runhub", "--heartbeat", "0.5", log_name="hub-1.log")
        want = {r: len(expected[r]["1d"]) for r in ROOTS}
        wait_until(lambda: all(client.xlen(f"{env.redis_prefix}:bars:{r}:1d") >= want[r] for r in ROOTS)
                   or hub.poll() is not None, 180, "every daily bar after the restart")
        assert hub.poll() is None, (tmp_path / "hub-1.log").read_text()[-3000:]
        got = {r: {tf: stream_bars(client, env.redis_prefix, r, tf) for tf in ("1m", "1h", "1d")} for r in ROOTS}
        resumed = (tmp_path / "hub-1.log").read_text()
        hub.terminate()
        hub.wait(30)
    finally:
        gateway.stop()
        env.cleanup()
    session = date(2026, 11, 27) if holiday.month == 11 else date(2027, 1, 19)
    for root in ROOTS:
        for tf in ("1m", "1h", "1d"):
            mine, ref = as_frame(got[root][tf]), expected[root][tf]
            assert list(mine.index) == list(ref.index), f"{root} {tf}: bar times differ"
            for col in ("open", "high", "low", "close", "volume", "trades"):
                assert ((mine[col] - ref[col]).abs() < 1e-9).all(), f"{root} {tf} {col}"
        day = as_frame(got[root]["1d"]).loc[str(session)]
        assert day["volume"] == expected[root]["1d"].loc[str(session)]["volume"]  # the folded session, whole
    opened = datetime.combine(holiday.date() - timedelta(days=1), time(17), tzinfo=CT)  # the evening before it
    assert f"start={opened.astimezone(timezone.utc).isoformat()}" in resumed  # not the evening of the holiday

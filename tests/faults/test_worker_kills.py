"""kill -9 of the worker or of the hub at random moments of a replayed week: the final orders, trades
and positions equal an uninterrupted run (the backtest of the same bars) and no order arrives twice."""
import os
import random
import signal
import time
from datetime import date

import pytest

from tests.e2e.appliance import wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import Expected, TradingRun, received
from trading.sim.market import front_month, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
KEY = "db-" + "faultsWorkerKillKey00000000003"
ROOTS = ["6A", "CL", "GC"]
KILLS = int(os.environ.get("PINEOPS_KILLS", "20"))


@pytest.mark.parametrize("victim", ["worker", "hub"])
def test_killed_at_random_moments(tmp_path, fault_report, victim):
    paths = generate(tmp_path / "market", roots=ROOTS, start=date(2026, 11, 2), days=5, seed=9, roll_day=30,
                     trades_per_minute=3.0)
    fronts = {r: front_month(r, date(2026, 11, 2)) for r in ROOTS}
    days = {r: len(expected_bars(paths[r], fronts[r])["1d"]) for r in ROOTS}
    rng = random.Random(int(os.environ.get("PINEOPS_KILL_SEED", "1")))
    kills = 0
    # ~5 trading days of data replayed in about 40 s, so the kills land all through it.
    with TradingRun(tmp_path, paths, fronts, days, key=KEY, speed=11_000, block_ms=100) as run:
        # A hub resumes from the session of its last published bar; one that never published anything
        # starts at the market's present, like a first start. The kills begin once bars flow.
        wait_until(lambda: all(run.client.xlen(f"{run.prefix}:bars:{r}:1m") for r in ROOTS), 120, "the first bars")
        while kills < KILLS and not run.replay_done():
            time.sleep(rng.uniform(0.3, 2.0))
            proc = getattr(run, victim)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            kills += 1
            run.start_worker() if victim == "worker" else run.start_hub()
        run.wait_caught_up()
        frames, summary = run.frames(), run.summary()
    broker = run.broker

    expected = Expected(frames)
    orders = broker.orders(status=None)
    buys, exits, duplicates = received(orders)
    lost = len(set(expected.buys) - set(buys)) + len(set(expected.exits) - set(exits))
    fault_report(f"kill -9 {victim} at random moments", runs=kills, expected=len(expected.buys) + len(expected.exits),
                 received=len(orders), duplicates=duplicates, lost=lost, errors=len(summary["ambiguous"]))
    assert kills >= min(KILLS, 10), "the replay ended before enough kills"
    assert summary["ambiguous"] == []
    assert duplicates == 0 and lost == 0
    assert (buys, exits) == (expected.buys, expected.exits)
    assert [(t[0], t[1][:19], t[3][:19], t[5]) for t in summary["trades"]] == [
        (t["symbol"], t["entry_time"][:19], t["exit_time"][:19], t["exit_reason"]) for t in expected.closed]
    # Prices to 1e-9: a stop at entry × 0.99 is off the tick grid, and the database's decimal and the
    # backtest's float may fall either side of a 6th-decimal half.
    for t, want in zip(summary["trades"], expected.closed):
        assert abs(t[2] - want["entry_price"]) < 1e-9 and abs(t[4] - want["exit_price"]) < 1e-9, (t, want)
    assert summary["open"] == expected.open_at_end
    if victim == "hub":  # the streams hold every hour once, whole, as an independent resample makes them
        for root in ROOTS:
            want, got = expected_bars(paths[root], fronts[root])["1h"], frames[root]
            assert len(got) == len(want), f"{root}: {len(got)} hourly bars, {len(want)} expected"
            for col in ("open", "high", "low", "close", "volume"):
                assert (abs(got[col].to_numpy() - want[col].to_numpy()) < 1e-9).all(), f"{root} 1h {col}"


def test_worker_killed_while_its_order_is_in_flight_sends_it_once(tmp_path, fault_report):
    """The broker holds the first POST's answer for 3 s; the worker's process group is killed -9 in
    that time. The POST still completes (the sender is not in the worker's group), is recorded as
    sent, and the next worker neither resends it nor declares it ambiguous. The replay goes as fast as
    the gateway can: what matters is the held answer, not where the market is."""
    paths = generate(tmp_path / "market", roots=["CL"], start=date(2026, 11, 2), days=3, seed=9, roll_day=30,
                     trades_per_minute=3.0)
    fronts = {"CL": front_month("CL", date(2026, 11, 3))}
    days = {"CL": len(expected_bars(paths["CL"], fronts["CL"])["1d"])}
    with TradingRun(tmp_path, paths, fronts, days, key=KEY, block_ms=100) as run:
        run.broker.script({"status": 200, "delay": 3.0})
        wait_until(lambda: run.broker.snapshot(), 120, "the first order reaching the broker")
        os.killpg(run.worker.pid, signal.SIGKILL)
        run.worker.wait(10)
        run.start_worker()
        run.wait_caught_up()
        first = run.broker.snapshot()[0]["order"]["extras"]["signal_id"]
        state = run.env.shell_json("import json; from trading.models import Signal\n"
                                   f"s = Signal.objects.get(key={first!r}); print(json.dumps([s.state, s.attempts]))")
        summary = run.summary()
        frames = run.frames()
    buys, exits, duplicates = received(run.broker.orders(status=None))
    expected = Expected(frames)
    lost = len(set(expected.buys) - set(buys)) + len(set(expected.exits) - set(exits))
    fault_report("kill -9 worker during a POST", runs=1, expected=len(expected.buys) + len(expected.exits),
                 received=len(buys) + len(exits), duplicates=duplicates, lost=lost, errors=len(summary["ambiguous"]))
    assert state == ["sent", 1]
    assert duplicates == 0 and lost == 0 and summary["ambiguous"] == []

"""The drift report of the trading path's real processes, interrupted: the worker killed -9 in the middle of
the replay and an hour of "block entries", and on another day an hour of CL's trades lost before the hub
(a gateway fault). The gateway holds the replay at two market times so that the killswitch covers exactly
one decided hour; the report of that session names exactly the entries the killswitch blocked (reason
killswitch) and nothing else. After the replay the bar store is filled from the full DBN files (`manage.py
warmup`, as a nightly warmup would): the report of the lost hour's session names CL and the hour, and
the decisions the gap changed, each with reason hub gap. Every other session has no difference."""
import os
import signal
from datetime import datetime, timedelta, timezone

import pytest

from strategies.calendar import session_date
from tests.e2e.appliance import wait_until
from tests.e2e.test_trading_path import DRIFT, KEY, ROOTS, START, market  # noqa: F401 — market is a fixture
from tests.e2e.trading_setup import TradingRun
from trading.sim.gateway import Faults

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
UTC = timezone.utc
CURSOR = ("SELECT c.last_bar_ms FROM trading_workercursor c JOIN trading_strategy s ON s.id = c.strategy_id"
          " WHERE s.name = 'ibs_a'")
BLOCKED = ("SELECT i.root, s.bar_time FROM trading_signal s JOIN trading_instrument i ON i.id = s.instrument_id"
           " WHERE s.risk_control = 'killswitch' ORDER BY 2, 1")
UNSENT = "SELECT COUNT(*) FROM trading_signal WHERE state IN ('pending', 'sending')"
HOUR = datetime(2026, 11, 5, 14, tzinfo=UTC)  # Thursday 08:00 Chicago, mid-replay: the backtest enters CL at it
LOST = datetime(2026, 11, 9, 12, tzinfo=UTC)  # Monday 06:00 Chicago: the backtest's CL entry is decided on it


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_a_kill_and_an_hour_of_block_entries_drift_by_exactly_the_blocked_entries(tmp_path, market):  # noqa: F811
    paths, fronts, days = market
    faults = Faults(holds=[int((HOUR + timedelta(minutes=5)).timestamp() * 1e9),
                           int((HOUR + timedelta(hours=1, minutes=5)).timestamp() * 1e9)],
                    lose=[("CL", int(LOST.timestamp() * 1e9), int((LOST + timedelta(hours=1)).timestamp() * 1e9))])
    with TradingRun(tmp_path, paths, fronts, days, key=KEY, faults=faults) as run:
        gateway = run.gateway
        wait_until(gateway.held.is_set, 240, "the replay held before the hour")
        wait_until(lambda: run.env.query(CURSOR) == [(ms(HOUR - timedelta(hours=1)),)], 120, "the hour before decided")
        # The sender through what the worker decided before the hour (a loaded machine's sender may still be
        # posting the catch-up's orders): the killswitch then covers the hour alone.
        wait_until(lambda: run.env.query(UNSENT) == [(0,)], 120, "the orders decided before the hour sent")
        os.killpg(run.worker.pid, signal.SIGKILL)
        run.worker.wait(10)
        run.env.shell("from trading.risk.killswitch import set_mode; set_mode('entries', 'an hour aside', actor='t')")
        run.start_worker()
        gateway.release()
        wait_until(gateway.held.is_set, 120, "the replay held after the hour")
        wait_until(lambda: run.env.query(CURSOR) == [(ms(HOUR),)], 120, "the hour decided under block entries")
        run.env.shell("from trading.risk.killswitch import set_mode; set_mode('off', 'back', actor='t')")
        gateway.release()
        run.wait_caught_up()
        assert gateway.counters.lost > 0
        run.env.manage("warmup", "--from-dir", str(paths["CL"].parent))
        blocked = run.env.query(BLOCKED)
        drift = run.env.shell_json(DRIFT)
    # The hour's entries, and entries decided before it still waiting in the outbox (the rate limit) when
    # the killswitch went on: every one blocked, and every one is what the report of its session names.
    assert [(root, str(t)[:16]) for root, t in blocked] == [("CL", f"{HOUR:%Y-%m-%d %H:%M}")], blocked
    by_day: dict[str, list] = {}
    for root, t in blocked:
        at = t if isinstance(t, datetime) else datetime.fromisoformat(str(t))
        by_day.setdefault(str(session_date(at.replace(tzinfo=UTC))), []).append([root, "buy", at.isoformat()[:16]])
    assert len(drift) >= 5
    lost_day = str(session_date(LOST))
    assert lost_day != str(session_date(HOUR)) and lost_day in drift
    for day, (matched, count, items, notes) in drift.items():
        top = [i[:3] for i in items if not i[5]]
        if day == lost_day:  # the gap: named in the notes, and every decision it changed has its reason
            assert [n for n in notes if n.startswith("hub gap:")] == [
                f"hub gap: CL had no bar from the hub at {LOST:%Y-%m-%d %H:%M} UTC "
                "(the bar store has it from another source)"], notes
            assert count == len(top) > 0 and ["CL", "buy", LOST.isoformat()[:16]] in top, (day, items)
            assert all(i[4] == "hub_gap" for i in items), (day, items)  # what follows from them included
            assert all(f"CL: no hub bar at {LOST:%Y-%m-%d %H:%M} UTC" in i[6] for i in items if not i[5]), (day, items)
            continue
        assert count == len(top) == len(by_day.get(day, [])) and sorted(top) == sorted(by_day.get(day, [])), (day, items)
        assert all(i[4] == "killswitch" for i in items), (day, items)
        assert all(i[3] == "missing_live" for i in items if not i[5]), (day, items)

"""The whole trading path with real processes: synthetic market → local gateway → runhub (official
client, real Redis) → runworker → local TradersPost. The orders received equal the trades of
strategies.backtest on the same hourly bars; every order arrives once. Beside the live ibs_a, its paper
copy ibs_a_paper runs on its own worker: the built-in paper broker takes its orders, its trades equal the
backtest to the cent, apart from the live ones, and TradersPost receives nothing of it."""
from datetime import date
from decimal import Decimal

import pytest

from tests.e2e.appliance import to_ts
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import Expected, TradingRun, busiest_window, received
from strategies.instruments import CONTRACT_SPECS
from trading.sim.market import front_month, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
KEY = "db-" + "e2eWorkerTestKey00000000000002"
ROOTS = ["6A", "CL", "GC"]
START = date(2026, 11, 2)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    paths = generate(out, roots=ROOTS, start=START, days=9, seed=5, roll_day=20, trades_per_minute=3.0)
    fronts = {root: front_month(root, START) for root in ROOTS}
    days = {root: len(expected_bars(paths[root], fronts[root])["1d"]) for root in ROOTS}
    return paths, fronts, days


# The drift report of every session the worker traded, as `manage.py drift` makes it.
DRIFT = ("import json; from trading.models import Strategy, StoredBar; from trading.drift.report import make_report\n"
         "from strategies.calendar import session_date, session_close; from trading.drift.session import decided_until\n"
         "s = Strategy.objects.get(name='ibs_a'); until = decided_until(s)\n"
         "days = sorted({session_date(t) for t in StoredBar.objects.filter(source='hub', timeframe='1h')"
         ".values_list('ts', flat=True)})\n"
         "out = {}\n"
         "for d in days:\n"
         "    if session_close(d) <= until:\n"
         "        r = make_report(s, d); out[str(d)] = [r.matched, r.differences, [[i.root, i.action, i.bar_time.isoformat()[:16],"
         " i.kind, i.reason, bool(i.follows_id), i.detail] for i in r.items.exclude(kind='matched')], r.notes]\n"
         "print(json.dumps(out))")


PAPER_ORDERS = ("import json; from trading.models import PaperOrder, Notification\n"
                "print(json.dumps({'orders': [[o.payload['action'], o.payload['extras']['signal_id'], o.signal.strategy.name]"
                " for o in PaperOrder.objects.select_related('signal__strategy')],"
                " 'titles': list(Notification.objects.filter(strategy__name='ibs_a_paper').values_list('title', flat=True))}))")


BOOKS = ("import json; from trading.performance import daily_rows, daily_rows_from_trades\n"
         "summary, trades = daily_rows(), daily_rows_from_trades()\n"
         "print(json.dumps([summary == trades, sum(len(days) for days in trades.values())]))")


def test_orders_received_equal_the_backtest_and_a_paper_copy_beside_it_trades_it_on_paper(tmp_path, market):
    paths, fronts, days = market
    with TradingRun(tmp_path, paths, fronts, days, key=KEY, paper_beside=True) as run:
        run.wait_caught_up()
        frames, summary, paper_summary = run.frames(), run.summary(), run.summary("ibs_a_paper")
        drift = run.env.shell_json(DRIFT)
        paper = run.env.shell_json(PAPER_ORDERS)
        books = run.env.shell_json(BOOKS)
        decided = [to_ts(at) for at, in run.env.query(
            "SELECT g.created_at FROM trading_signal g JOIN trading_strategy s ON s.id = g.strategy_id WHERE s.name = 'ibs_a'")]
        posted = [to_ts(at) for at, in run.env.query(
            "SELECT a.attempted_at FROM trading_deliveryattempt a JOIN trading_signal g ON g.id = a.signal_id"
            " JOIN trading_strategy s ON s.id = g.strategy_id WHERE s.name = 'ibs_a'")]
    broker = run.broker

    expected = Expected(frames)
    assert len(expected.closed) > 20
    orders = broker.orders()
    rejected = [e for e in broker.snapshot() if e["status"] != 200]
    assert rejected == [], f"every POST was accepted: {rejected}"
    # The rate limit held: the sender never started more POSTs than the limit in any window (each attempt is
    # stamped just after its slot is taken; the broker's arrival times are not the measure, since a loaded
    # machine delays one POST more than the next and bunches them), one attempt per POST received, and when
    # the replay decided orders faster than the limit allows (it does on an idle machine; a loaded one may
    # replay slower), the sender held them back (orders pending, none lost).
    count, seconds = TradingRun.RATE_LIMITS
    assert len(posted) == len(broker.snapshot())
    # (a window a tenth shorter than the limiter's: the slot is taken a read before the attempt's stamp)
    assert busiest_window(posted, seconds * 0.9) <= count
    throttled = sum(p.read_text().count("order held by the rate limit") for p in tmp_path.glob("worker-*.log"))
    if busiest_window(decided, seconds * 0.75) > count:
        assert throttled > 0, "orders were decided faster than the rate limit and none was held back"
    buys, exits, duplicates = received(orders)
    assert duplicates == 0, "no order was posted twice"
    assert buys == expected.buys
    assert exits == expected.exits
    assert all(o["timeInForce"] == "day" and o["orderType"] == "market" and "price" not in o for o in orders)
    assert all(o["stopLoss"] == {"type": "stop", "percent": 1.0} for o in orders if o["action"] == "buy")

    # The modelled trades in the database are the backtest's, price for price (within one tick).
    assert summary["ambiguous"] == [] and summary["open"] == expected.open_at_end
    assert len(summary["trades"]) == len(expected.closed)
    for (sym, entry_t, entry_p, exit_t, exit_p, reason, pnl), t in zip(summary["trades"], expected.closed):
        tick = float(CONTRACT_SPECS[sym].tick_size)
        assert (sym, reason) == (t["symbol"], t["exit_reason"])
        assert entry_t[:19] == t["entry_time"][:19] and exit_t[:19] == t["exit_time"][:19]
        assert abs(float(entry_p) - t["entry_price"]) < tick and abs(float(exit_p) - t["exit_price"]) < tick
        assert Decimal(pnl) == Decimal(repr(t["pnl"])), (sym, exit_t, pnl, t["pnl"])  # to the cent: one money rule
    # The daily summary the dashboard reads (kept with each trade booked) equals the trades, session by session.
    assert books[0] and books[1] >= 5, books
    # Uninterrupted, every closed session's drift report finds the worker equal to the backtest.
    assert len(drift) >= 5 and sum(m for m, *_ in drift.values()) >= len(expected.closed)
    assert {day: d for day, (_, n, d, _) in drift.items() if n} == {}

    # ibs_a_paper, beside it: every order to the built-in paper broker (one PaperOrder each, the payload
    # TradersPost would have got), its trades the backtest's to the cent, none of them TradersPost's.
    assert {o["extras"]["strategy"] for o in orders} == {"ibs_a"}, "a paper strategy's order reached TradersPost"
    assert {name for _, _, name in paper["orders"]} == {"ibs_a_paper"}
    buys = sorted((key.split(":")[1], key.split(":", 2)[2][:19]) for action, key, _ in paper["orders"] if action == "buy")
    assert buys == expected.buys and len(paper["orders"]) == len(expected.buys) + len(expected.exits)
    assert paper_summary["open"] == expected.open_at_end and len(paper_summary["trades"]) == len(expected.closed)
    for (sym, entry_t, _, exit_t, _, reason, pnl), t in zip(paper_summary["trades"], expected.closed):
        assert (sym, entry_t[:19], exit_t[:19], reason) == (t["symbol"], t["entry_time"][:19], t["exit_time"][:19],
                                                           t["exit_reason"])
        assert Decimal(pnl) == Decimal(repr(t["pnl"])), (sym, exit_t, pnl, t["pnl"])
    assert paper["titles"] and all(title.startswith("[paper] ") for title in paper["titles"])

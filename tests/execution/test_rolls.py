"""A roll with a position open, through the running worker, real Redis streams, the database and the
TradersPost stand-in: the position belongs to its contract until it is closed. The root's stream moves
to the new front (CLF7, in contango or in backwardation: its prices would trip the stop or the target),
the old contract's bars come on its own stream (HeldBar, as the hub publishes them), and the stop, the
target, the exit order's ticker and the P&L only ever use the old contract's prices."""
from datetime import datetime, timedelta

import pytest

from strategies.backtest import Leg, run
from strategies.bars import Bar, HeldBar, frame_from_bars
from strategies.params import IBSParams
from tests.desk import MID, SIGNAL, T0, demo_desk, running_worker
from trading.marketdata import streams
from trading.models import Notification, Position, Signal, Strategy, StrategyInstrument, Trade

pytestmark = pytest.mark.django_db(transaction=True)
H = timedelta(hours=1)
PARAMS = {"stop_loss_pct": 1.0, "take_profit_pct": 1.0, "flat_time": "none", "max_bars_held": 20}
# CLZ6's own hours after the roll: calm, inside a 1 % stop and target of the 100.0 entry
OLD = [(100.1, 100.5, 99.7, 100.2), (100.3, 100.6, 99.9, 100.4), (100.2, 100.6, 99.8, 100.5), MID, MID]
CURVES = {"contango": 3.0, "backwardation": -3.0}  # CLF7 against CLZ6: past the target, past the stop


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env):
    strategy = demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, roots=("CL",))
    Strategy.objects.filter(pk=strategy.pk).update(**PARAMS)
    return strategy


def shifted(row, by: float):
    return tuple(round(p + by, 2) for p in row)


class Tape:
    """Hours into the streams as the hub writes them: the root's front bar, a held contract's own bar,
    then the watermark past the hour; the worker polls after each."""

    def __init__(self, worker):
        self.worker, self.ts = worker, T0
        self.fronts: list[Bar] = []
        self.held: list[Bar] = []

    def hour(self, front: tuple | None, contract: str = "CLZ6", held: tuple | None = None) -> None:
        if front is not None:
            self.fronts.append(Bar("CL", contract, "1h", self.ts, *front, 100, 10))
            streams.publish(self.fronts[-1])
        if held is not None:
            self.held.append(HeldBar("CL", "CLZ6", "1h", self.ts, *held, 100, 10))
            streams.publish(self.held[-1])
        streams.set_watermark(int((self.ts + H).timestamp()) * 10**9)
        self.ts += H
        self.worker.poll()

    def backtest(self, policy: str) -> list[tuple]:
        """The backtest of what was published: the root's bars with their contracts, the held contract's own."""
        leg = Leg("CL", frame_from_bars(self.fronts), IBSParams(**PARAMS), 1000.0, 1.25,
                  contracts=tuple(b.contract for b in self.fronts), held={"CLZ6": frame_from_bars(self.held)},
                  roll_policy=policy)
        return [(datetime.fromisoformat(t["entry_time"]), round(t["entry_price"], 6), round(t["exit_price"], 6),
                 t["exit_reason"], round(t["pnl"], 2)) for t in run([leg], use_ml=False).trades
                if t["exit_reason"] != "end_of_data"]


def booked() -> list[tuple]:
    return [(t.entry_time, round(float(t.entry_price), 6), round(float(t.exit_price), 6), t.exit_reason,
             round(float(t.pnl), 2)) for t in Trade.objects.order_by("exit_time")]


def entered_on_clz6(tape: Tape) -> Position:
    tape.hour(SIGNAL)  # IBS 0.1 on CLZ6, the front: the entry
    tape.hour(MID)  # filled at its open, 100.0: stop 99.0, target 101.0
    pos = Position.objects.get()
    assert (pos.contract, float(pos.entry_price), pos.filled) == ("CLZ6", 100.0, True)
    return pos


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_exit_policy_exits_the_old_contract_at_the_roll_on_its_own_prices(desk, broker, curve):
    offset = CURVES[curve]
    tape = Tape(running_worker())
    entered_on_clz6(tape)
    tape.hour(shifted(MID, offset), "CLF7", held=OLD[0])  # the first hour after the roll: exit at its close
    exit_ = Signal.objects.get(action="exit")
    assert (exit_.reason, exit_.contract, float(exit_.signal_price)) == ("roll", "CLZ6", OLD[0][3])
    tape.hour(shifted(SIGNAL, offset), "CLF7", held=OLD[1])  # filled at CLZ6's open; CLF7 signals an entry
    trade = Trade.objects.get()
    assert (trade.symbol, trade.contract, trade.exit_reason) == ("CL", "CLZ6", "roll")
    assert (float(trade.entry_price), float(trade.exit_price)) == (100.0, OLD[1][0])  # never a CLF7 price
    assert float(trade.pnl) == pytest.approx((OLD[1][0] - 100.0) * 1000 - 2 * 1.25)
    tape.hour(shifted(MID, offset), "CLF7")
    new = Position.objects.get(state="open")
    assert (new.contract, float(new.entry_price)) == ("CLF7", shifted(MID, offset)[0])  # the strategy's own entry
    orders = [(o["action"], o["ticker"], o["extras"].get("reason")) for o in broker.orders()]
    assert orders == [("buy", "CLZ6", "entry"), ("exit", "CLZ6", "roll"), ("buy", "CLF7", "entry")]
    assert not Notification.objects.filter(kind="emergency").exists()
    assert booked() == tape.backtest("exit")  # the backtest rolls the same way: zero drift


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_hold_policy_manages_the_old_contract_to_its_own_exit_exactly_as_the_backtest_does(desk, broker, curve):
    offset = CURVES[curve]
    StrategyInstrument.objects.filter(strategy=desk, instrument__root="CL").update(roll_policy="hold")
    tape = Tape(running_worker())
    entered_on_clz6(tape)
    fronts = [SIGNAL, SIGNAL, MID, SIGNAL, MID]  # CLF7's entry signals: taken only once CL is flat
    for front, held in zip(fronts, OLD):
        tape.hour(shifted(front, offset), "CLF7", held=held)
    old_hours = [SIGNAL, MID, *OLD]  # CLZ6's bars alone, as if it had never rolled
    bars = [Bar("CL", "CLZ6", "1h", T0 + i * H, *row, 100, 10) for i, row in enumerate(old_hours)]
    alone = run([Leg("CL", frame_from_bars(bars), IBSParams(**PARAMS), 1000.0, 1.25)], use_ml=False).trades
    want = [(datetime.fromisoformat(t["entry_time"]), round(t["entry_price"], 6), round(t["exit_price"], 6),
             t["exit_reason"], round(t["pnl"], 2)) for t in alone if t["exit_reason"] != "end_of_data"]
    assert booked() == want == tape.backtest("hold") and [g[3] for g in want] == ["ibs_exit"]  # zero drift
    assert Trade.objects.get().contract == "CLZ6"
    orders = [(o["action"], o["ticker"], o["extras"]["bar_time"][:13]) for o in broker.orders()]
    assert orders == [("buy", "CLZ6", "2026-11-03T01"), ("exit", "CLZ6", "2026-11-03T05"),
                      ("buy", "CLF7", "2026-11-03T06")]  # the new front's own signal, once flat


def test_an_hour_without_the_held_contracts_bar_moves_nothing_and_says_so_once(desk, broker):
    tape = Tape(running_worker())
    pos = entered_on_clz6(tape)
    for _ in range(2):
        tape.hour(shifted(MID, -3.0), "CLF7")  # no CLZ6 bar: CLF7's 97.0 must not trip the stop
    pos.refresh_from_db()
    assert (pos.state, pos.exit_signal_id) == ("open", None) and not Trade.objects.exists()
    alerts = Notification.objects.filter(kind="emergency", title="ibs_a: CL position in CLZ6 has no bar of its own")
    assert alerts.count() == 1 and "stop and target" in alerts.get().body
    tape.hour(shifted(MID, -3.0), "CLF7", held=OLD[0])  # its bar again: managed, and exited at the roll
    assert Signal.objects.get(action="exit").reason == "roll"


def test_a_worker_catching_up_across_the_roll_follows_the_contract_it_just_entered(desk, broker):
    """Hours decided in one poll (a worker behind, after a restart or an outage): the position opened in
    the first of them is in CLZ6, whose own stream the worker starts reading only then."""
    worker = running_worker()
    tape = Tape(type("Away", (), {"poll": lambda self: None})())  # published while the worker is not reading
    tape.hour(SIGNAL)
    tape.hour(MID)
    tape.hour(shifted(MID, 3.0), "CLF7", held=OLD[0])
    tape.hour(shifted(MID, 3.0), "CLF7", held=OLD[1])
    worker.poll()
    trade = Trade.objects.get()
    assert (trade.contract, trade.exit_reason, float(trade.exit_price)) == ("CLZ6", "roll", OLD[1][0])
    assert not Notification.objects.filter(kind="emergency").exists()
    assert booked() == tape.backtest("exit")

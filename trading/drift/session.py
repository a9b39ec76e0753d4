"""What a drift report compares, read from the database: one strategy's CME session.

The backtest's side: the session's hourly bars from the bar store, the strategy's terms, the ML scores
the worker's models give, and the books at the session's open as the position rows say. The live side:
the worker's signals of the session with the fills the books gave them. Both as `Decision`s keyed by
(root, action, decision bar), so the two can be compared one by one.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal

import numpy as np
import pandas as pd
from django.conf import settings
from django.db.models import Q

from strategies.backtest import BacktestResult, Leg
from strategies.features import LOOKBACK, feature_names, feature_row
from strategies.ibs import EntrySignal, ExitSignal
from strategies.ibs import Position as BookPosition
from strategies.ml import ModelError, load
from strategies.calendar import session_end, session_open
from strategies.pnl import price
from trading.marketdata.barstore import load_frame
from trading.models import Position, Signal, StoredBar, Strategy, StrategyInstrument, Trade

log = logging.getLogger(__name__)
UTC = timezone.utc
NS = 1_000_000_000
State = Signal.State
TAKEN = (State.PENDING, State.SENDING, State.SENT, State.HELD)  # an order the worker decided and let out


@dataclass(frozen=True)
class Decision:
    """One decision of either side: an entry at a bar's close, or an exit decided at one (or the
    broker's bracket inside a bar). `fill` is (time, price) once known."""
    root: str
    action: str  # buy | exit
    bar_time: datetime
    reason: str = ""  # an exit's
    fill: tuple[datetime, Decimal] | None = None
    signal: Signal | None = None
    trade: object = None  # the trade (or position) it opened or closed: its exit follows from its entry
    state: str = ""  # live: the signal's state and control

    @property
    def key(self) -> tuple[str, str, datetime]:
        return self.root, self.action, self.bar_time


@dataclass
class SessionData:
    strategy: Strategy
    day: date
    start: datetime
    end: datetime
    legs: list[Leg]
    sources: dict[str, pd.DataFrame]  # root → the session's bars with their `source`
    live: dict[tuple, Decision] = field(default_factory=dict)
    refused: dict[tuple, Signal] = field(default_factory=dict)  # (root, bar time) → a buy the worker refused
    notes: list[str] = field(default_factory=list)

    @property
    def bars(self) -> int:
        return sum(len(f) for f in self.sources.values())


def _frame(rows) -> pd.DataFrame:
    rows = list(rows)
    return pd.DataFrame({
        "ts": np.array([int(r.ts.timestamp()) * NS for r in rows], dtype=np.int64),
        "open": [r.open for r in rows], "high": [r.high for r in rows], "low": [r.low for r in rows],
        "close": [r.close for r in rows], "volume": [r.volume for r in rows],
        "contract": [r.contract for r in rows], "source": [r.source for r in rows]})


def _legs_of(strategy: Strategy, start: datetime, end: datetime) -> list[StrategyInstrument]:
    """The instruments the strategy traded in the session: enabled now, with a signal in it, or holding a
    position now."""
    active = Q(enabled=True) if strategy.enabled else Q(pk__in=[])
    touched = set(Signal.objects.filter(strategy=strategy, bar_time__gte=start, bar_time__lt=end)
                  .values_list("instrument_id", flat=True))
    touched |= set(Position.objects.managed().filter(strategy=strategy).values_list("instrument_id", flat=True))
    return list(strategy.legs.select_related("instrument").filter(active | Q(instrument_id__in=touched))
                .order_by("instrument__root"))


def _closed_before(pos: Position, start: datetime) -> bool:
    if pos.exit_time is not None:
        return pos.exit_time < start
    trade = Trade.objects.filter(entry_signal=pos.entry_signal_id).first()
    return trade is not None and trade.exit_time < start


def _opening(strategy: Strategy, root: str, start: datetime) -> dict:
    """The book of `root` at the session's open, from its position rows: a position open then (its bars
    held counted on the stored bars since its fill), an entry waiting for its fill, an exit for its open."""
    pos = (Position.objects.filter(strategy=strategy, instrument__root=root, signal_time__lt=start)
           .exclude(state=Position.State.CANCELLED).select_related("entry_signal", "exit_signal")
           .order_by("-signal_time").first())
    if pos is None or _closed_before(pos, start):
        return {}
    if pos.entry_time >= start:  # decided at the last close before the open: fills at the open
        sig = pos.entry_signal
        return {"pending_entry": EntrySignal(sig.bar_time, float(sig.signal_price), pos.ibs_entry or 0.0),
                "pending_entry_ml": pos.ml_score}
    held = StoredBar.objects.filter(root=root, timeframe="1h", ts__gte=pos.entry_time, ts__lt=start).count()
    ex = pos.exit_signal if pos.exit_signal_id and pos.exit_signal.bar_time < start else None
    book = {"position": BookPosition(pos.entry_time, float(pos.entry_price), float(pos.stop_price or 0),
                                     float(pos.target_price or 0), pos.ibs_entry or 0.0, pos.ml_score, held,
                                     pos.signal_time, exit_held=ex is not None and ex.fill != Signal.Fill.NEXT_OPEN)}
    if ex is not None and ex.fill == Signal.Fill.NEXT_OPEN:
        book["pending_exit"] = ExitSignal(ex.bar_time, float(ex.signal_price), ex.reason,
                                          ex.ibs if ex.ibs is not None else math.nan)
    return book


def _scores(rows: list[StrategyInstrument], sessions: dict[str, pd.DataFrame], end: datetime,
            notes: list[str]) -> dict[str, np.ndarray | None]:
    """Each instrument's ML score on every session bar, as the worker's model scores it (the live form of the
    features, from the bar store); None: it trades without the filter; NaN where it has no model and its
    policy skips entries."""
    roots = [r.instrument.root for r in rows]
    history = {root: load_frame(root, "1h", until=end, limit=LOOKBACK * 2 + 48) for root in roots}
    out: dict[str, np.ndarray | None] = {}
    for row in rows:
        root = row.instrument.root
        if not row.ml_enabled:
            out[root] = None
            continue
        try:
            model = load(root, settings.MODELS_DIR, feature_names(roots, root))
        except ModelError as exc:
            notes.append(f"{root}: ML model unavailable ({exc}); policy {row.get_ml_failure_policy_display()}")
            out[root] = (np.full(len(sessions[root]), np.nan)
                         if row.ml_failure_policy == StrategyInstrument.ModelFailurePolicy.SKIP_ENTRIES else None)
            continue
        out[root] = np.array([float(model.probability(feature_row(history, root, int(ts)).to_frame().T)[0])
                              for ts in sessions[root]["ts"]], dtype=float)
    return out


def load_session(strategy: Strategy, day: date) -> SessionData:
    """Everything the report of `strategy`'s session `day` needs from the database."""
    start, end = session_open(day), session_end(day)
    rows = _legs_of(strategy, start, end)
    sources = {r.instrument.root: _frame(StoredBar.objects.filter(root=r.instrument.root, timeframe="1h",
                                                                  ts__gte=start, ts__lt=end).order_by("ts"))
               for r in rows}
    data = SessionData(strategy, day, start, end, [], sources)
    scores = _scores(rows, sources, end, data.notes)
    for row in rows:
        root, frame = row.instrument.root, sources[row.instrument.root]
        data.legs.append(Leg(root, frame[["ts", "open", "high", "low", "close", "volume"]], row.params(),
                             float(row.instrument.point_value), float(row.commission_per_side), row.size,
                             ml_scores=scores[root], contracts=tuple(frame["contract"]), roll_policy=row.roll_policy,
                             opening=_opening(strategy, root, start)))
    _live(data)
    return data


def signal_state(sig: Signal) -> str:
    """A signal's state and the control that refused or held it, as the report shows it."""
    return f"{sig.state} ({sig.get_risk_control_display()})" if sig.risk_control else sig.state


def _live(data: SessionData) -> None:
    """The worker's decisions of the session, with the books' fills, and the entries it refused."""
    signals = (Signal.objects.filter(strategy=data.strategy, bar_time__gte=data.start, bar_time__lt=data.end)
               .select_related("instrument").order_by("bar_time", "id"))
    positions = {p.entry_signal_id: p for p in Position.objects.filter(entry_signal__in=signals)}
    closing = {p.exit_signal_id: p for p in Position.objects.filter(exit_signal__in=signals)}
    trades = {t.exit_signal_id: t for t in Trade.objects.filter(exit_signal__in=signals)}
    for sig in signals:
        root = sig.instrument.root
        state = signal_state(sig)
        if sig.action == Signal.Action.BUY:
            if sig.state not in TAKEN:
                data.refused[(root, sig.bar_time)] = sig
                continue
            pos = positions.get(sig.pk)
            fill = (pos.entry_time, pos.entry_price) if pos is not None and pos.filled else None
            decision = Decision(root, "buy", sig.bar_time, "entry", fill, sig, pos and pos.pk, state)
        else:
            if sig.risk_control == "superseded":
                continue  # replaced by the broker's bracket, which is its own exit decision
            trade, pos = trades.get(sig.pk), closing.get(sig.pk)
            done = trade or pos
            fill = (done.exit_time, done.exit_price) if done is not None and done.exit_time else None
            decision = Decision(root, "exit", sig.bar_time, sig.reason, fill, sig, pos and pos.pk, state)
        data.live[decision.key] = decision


def backtest_decisions(result: BacktestResult, start: datetime) -> dict[tuple, Decision]:
    """A backtest's decisions, in the live form: entries decided in the session (fill at the next open),
    exits (fill unknown when decided on the session's last bar)."""
    out: dict[tuple, Decision] = {}
    at = lambda iso: datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)  # noqa: E731
    for t in result.trades:
        trade = (t["symbol"], t["entry_time"])
        if t["signal_time"] and at(t["signal_time"]) >= start:
            d = Decision(t["symbol"], "buy", at(t["signal_time"]), "entry", (at(t["entry_time"]), price(t["entry_price"])),
                         trade=trade)
            out[d.key] = d
        if at(t["exit_signal_time"]) < start:
            continue  # decided in the session before (an exit of the opening book filled at this open)
        if t["exit_reason"] != "end_of_data":
            d = Decision(t["symbol"], "exit", at(t["exit_signal_time"]), t["exit_reason"],
                         (at(t["exit_time"]), price(t["exit_price"])), trade=trade)
        elif t["exit_decided"] != "end_of_data":
            d = Decision(t["symbol"], "exit", at(t["exit_signal_time"]), t["exit_decided"], None, trade=trade)
        else:
            continue
        out[d.key] = d
    for p in result.pending_entries:
        d = Decision(p["symbol"], "buy", at(p["signal_time"]), "entry", None, trade=(p["symbol"], p["signal_time"]))
        out[d.key] = d
    return out


def hub_only(legs: list[Leg], sources: dict[str, pd.DataFrame]) -> tuple[list[Leg], dict[str, list[datetime]]]:
    """The legs with only the bars the hub published (what the worker saw), and the hours it never did."""
    out, missing = [], {}
    for leg in legs:
        mask = (sources[leg.root]["source"] == "hub").to_numpy()
        if not mask.all():
            missing[leg.root] = [datetime.fromtimestamp(int(ts) / NS, UTC) for ts in leg.bars["ts"][~mask]]
        keep = leg.bars[mask].reset_index(drop=True)
        scores = leg.ml_scores[mask] if leg.ml_scores is not None else None
        contracts = tuple(np.asarray(leg.contracts, dtype=object)[mask]) if leg.contracts is not None else None
        out.append(Leg(leg.root, keep, leg.params, leg.point_value, leg.commission, leg.size, scores, contracts,
                       leg.held, leg.roll_policy, leg.opening))
    return out, missing


def hours(ts: list[datetime]) -> str:
    return ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in ts) + " UTC"


def decided_until(strategy: Strategy) -> datetime | None:
    """The last hour the worker decided (its cursor), or None before its first."""
    cursor = getattr(strategy, "cursor", None)
    return datetime.fromtimestamp(cursor.last_bar_ms / 1000, UTC) if cursor and cursor.last_bar_ms else None


__all__ = ["Decision", "SessionData", "backtest_decisions", "decided_until", "hours", "hub_only", "load_session",
           "signal_state"]

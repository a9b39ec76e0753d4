"""The drift report of one strategy's CME session: the backtest beside what the worker decided.

`strategies.backtest` re-runs the session over the bar store's bars from the books at the session's
open; its decisions and the worker's are compared one by one: matched, missing live, extra live, or a
different price or time. A difference is explained by peeling what the records show off the backtest
until it agrees with the worker: first the hub's view (only the bars the hub published: a hub gap),
then the entries the worker refused by a control outside the strategy (killswitch, daily stop, a
disabled instrument, an unavailable model) or the broker never took (rejected, expired). What is still
different is looked up in the records (the worker behind or an hour skipped, a configuration saved or a
model replaced during the session) or is "unexplained", which is alerted. An exit of a trade whose
entry differs, or an entry a slot decided, follows from that difference and is listed under it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum

from strategies import backtest
from strategies.calendar import previous_trade_date, session_close, session_date
from trading.delivery.alerts import enqueue
from trading.drift.session import (Decision, SessionData, backtest_decisions, decided_until, hours, hub_only,
                                    load_session, signal_state)
from trading.models import ConfigRevision, DriftItem, DriftReport, Notification, RiskControl, Signal, Strategy, Trade

log = logging.getLogger(__name__)
UTC = timezone.utc
Kind, Reason = DriftItem.Kind, DriftItem.Reason
CONTROL_REASONS = {RiskControl.KILLSWITCH: Reason.KILLSWITCH, RiskControl.ENV_OVERRIDE: Reason.KILLSWITCH,
                   RiskControl.UNREADABLE: Reason.KILLSWITCH, RiskControl.DAILY_STOP: Reason.DAILY_STOP,
                   RiskControl.MODEL_POLICY: Reason.MODEL_CHANGE, RiskControl.DISABLED: Reason.CONFIG_CHANGE}


@dataclass(frozen=True)
class Veto:
    """An entry the worker did not make for a reason outside the strategy: the backtest is told the same."""
    reason: str
    detail: str

    def __bool__(self) -> bool:
        return True


def veto_of(sig: Signal) -> Veto | None:
    """Why a refused buy signal did not become a position, when it is not the strategy's own decision
    (the ML filter, max positions and a closing market are the backtest's too)."""
    if sig.state == Signal.State.FAILED:
        return Veto(Reason.BROKER_REJECTION, f"the broker did not take it: {sig.state_reason or sig.last_error}"[:300])
    if sig.state == Signal.State.EXPIRED:
        return Veto(Reason.ORDER_EXPIRED, sig.state_reason[:300])
    if sig.state == Signal.State.BLOCKED and sig.risk_control in CONTROL_REASONS:
        return Veto(CONTROL_REASONS[sig.risk_control], f"{sig.get_risk_control_display()}: {sig.state_reason}"[:300])
    return None


def _same(a: Decision | None, b: Decision | None) -> bool:
    """Both sides decided it alike: same exit reason, and the same fill where both know it."""
    if a is None or b is None:
        return a is None and b is None
    if a.reason != b.reason:
        return False
    return a.fill is None or b.fill is None or (a.fill[0] == b.fill[0] and a.fill[1] == b.fill[1])


class Explainer:
    """The records a session's differences are explained by, and the counterfactual backtests."""

    def __init__(self, data: SessionData):
        self.data = data
        s = data.strategy
        run = lambda legs, veto=None: backtest_decisions(  # noqa: E731
            backtest.run(legs, timeframe=s.timeframe, max_positions=s.max_positions, entry_block=veto), data.start)
        self.result = backtest.run(data.legs, timeframe=s.timeframe, max_positions=s.max_positions)
        self.backtest = backtest_decisions(self.result, data.start)
        hub_legs, self.gaps = hub_only(data.legs, data.sources)
        self.hub_view = run(hub_legs) if self.gaps else self.backtest
        self.vetoes = {key: v for key, sig in data.refused.items() if (v := veto_of(sig))}
        self.vetoed = (run(hub_legs, lambda root, at: self.vetoes.get((root, at))) if self.vetoes
                       else self.hub_view)
        self.until = decided_until(s)
        self.skipped = self._skipped_hours()
        self.revisions = self._revisions()
        self.models = self._model_changes()
        for root, missing in self.gaps.items():
            data.notes.append(f"hub gap: {root} had no bar from the hub at {hours(missing)} "
                              "(the bar store has it from another source)")
        if self.until is None or self.until + timedelta(hours=1) < data.end - timedelta(hours=1):
            data.notes.append(f"the worker decided up to {self.until:%Y-%m-%d %H:%M} UTC" if self.until
                              else "the worker never decided an hour")
        for at, text in self.revisions:
            data.notes.append(f"configuration saved at {at:%Y-%m-%d %H:%M} UTC: {text}")
        for root, at in self.models.items():
            data.notes.append(f"{root}: model file replaced at {at:%Y-%m-%d %H:%M} UTC")

    def _skipped_hours(self) -> set[datetime]:
        prefix = f"hour-skipped:{self.data.strategy.name}:"
        keys = Notification.objects.filter(dedupe_key__startswith=prefix).values_list("dedupe_key", flat=True)
        return {datetime.fromtimestamp(int(k[len(prefix):]) / 1000, UTC) for k in keys if k[len(prefix):].isdigit()}

    def _revisions(self) -> list[tuple[datetime, str]]:
        s, d = self.data.strategy, self.data
        legs = list(s.legs.values_list("pk", "instrument_id"))
        rows = ConfigRevision.objects.filter(at__gte=d.start, at__lt=d.end).filter(
            Q(model="strategy", object_id=s.pk) | Q(model="strategyinstrument", object_id__in=[p for p, _ in legs])
            | Q(model="instrument", object_id__in=[i for _, i in legs])).order_by("at")
        return [(r.at, f"{r.object_repr} ({', '.join(r.fields) or 'saved'}) by {r.user}") for r in rows]

    def _model_changes(self) -> dict[str, datetime]:
        out = {}
        for leg in self.data.legs:
            for path in (settings.MODELS_DIR / f"{leg.root}.skops", settings.MODELS_DIR / f"{leg.root}.json"):
                if path.is_file():
                    at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                    if self.data.start <= at < self.data.end:
                        out[leg.root] = max(at, out.get(leg.root, at))
        return out

    def explain(self, key: tuple, live: Decision | None) -> tuple[str, str]:
        root, action, bar_time = key
        if self.gaps and _same(self.hub_view.get(key), live) and not _same(self.backtest.get(key), live):
            return Reason.HUB_GAP, "; ".join(f"{r}: no hub bar at {hours(ts)}" for r, ts in self.gaps.items())
        if key[1] == "buy" and (root, bar_time) in self.vetoes:
            veto = self.vetoes[(root, bar_time)]
            return veto.reason, veto.detail
        if self.vetoes and _same(self.vetoed.get(key), live):
            earlier = [(at, v) for (r, at), v in self.vetoes.items() if at <= bar_time]
            if earlier:
                at, veto = max(earlier, key=lambda e: e[0])
                return veto.reason, f"follows from the entry refused at {at:%Y-%m-%d %H:%M} UTC ({veto.detail})"[:400]
        if live is not None and live.signal is not None and (live.reason == "flatten"
                                                             or live.signal.fill == Signal.Fill.AT_SEND):
            return Reason.KILLSWITCH, f"{live.signal.get_fill_display()}: {live.state}"[:400]
        if bar_time in self.skipped:
            return Reason.WORKER_DOWN, f"the worker skipped the hour {bar_time:%Y-%m-%d %H:%M} UTC after failing on it"
        if self.until is None or bar_time > self.until:
            return Reason.WORKER_DOWN, (f"the worker decided up to {self.until:%Y-%m-%d %H:%M} UTC" if self.until
                                        else "the worker never decided an hour")
        changes = [(at, text) for at, text in self.revisions if at <= bar_time + timedelta(hours=1)]
        if changes:
            return Reason.CONFIG_CHANGE, f"configuration saved at {changes[-1][0]:%H:%M} UTC: {changes[-1][1]}"[:400]
        if root in self.models and self.models[root] <= bar_time + timedelta(hours=1):
            return Reason.MODEL_CHANGE, f"{root}'s model file replaced at {self.models[root]:%H:%M} UTC"
        return Reason.UNEXPLAINED, "no record explains it"


def _kind(bt: Decision | None, live: Decision | None) -> str:
    if _same(bt, live):
        return Kind.MATCHED
    return Kind.MISSING_LIVE if live is None else Kind.EXTRA_LIVE if bt is None else Kind.DIFFERENT


def compare(data: SessionData) -> tuple[Explainer, list[dict]]:
    """Every decision of either side, in time order, as the rows of the report (`follows`: an index)."""
    ex = Explainer(data)
    keys = sorted(ex.backtest.keys() | data.live.keys(), key=lambda k: (k[2], k[1] != "exit", k[0]))
    rows: list[dict] = []
    open_of: dict[object, int] = {}  # a trade (either side's) → the row of its entry when that differs
    for key in keys:
        bt, live = ex.backtest.get(key), data.live.get(key)
        row = {"kind": _kind(bt, live), "root": key[0], "action": key[1], "bar_time": key[2],
               "exit_reason": (bt or live).reason if key[1] == "exit" else "",
               "backtest": bt, "live": live, "reason": "", "detail": "", "follows": None}
        if row["kind"] != Kind.MATCHED:
            row["reason"], row["detail"] = ex.explain(key, live)
            trades = [d.trade for d in (bt, live) if d is not None and d.trade is not None]
            if key[1] == "buy":
                for trade in trades:
                    open_of[trade] = len(rows)
            else:
                parent = next((open_of[t] for t in trades if t in open_of), None)
                if parent is not None:
                    row["follows"], row["reason"] = parent, rows[parent]["reason"]
                    row["detail"] = f"the exit of the entry at {rows[parent]['bar_time']:%Y-%m-%d %H:%M} UTC"
            if row["follows"] is None and key[1] == "buy" and (key[0], key[2]) not in ex.vetoes \
                    and row["reason"] in (Reason.HUB_GAP, *CONTROL_REASONS.values(), Reason.BROKER_REJECTION,
                                          Reason.ORDER_EXPIRED):
                # an entry a slot decided: it follows from the last difference of the same cause
                parent = next((i for i in range(len(rows) - 1, -1, -1) if rows[i]["follows"] is None
                               and rows[i]["kind"] != Kind.MATCHED and rows[i]["reason"] == row["reason"]), None)
                if parent is not None:
                    row["follows"] = parent
        rows.append(row)
    return ex, rows


def _equity(points: list[tuple[datetime, Decimal]]) -> list[list]:
    total, out = Decimal(0), []
    for at, pnl in sorted(points, key=lambda p: p[0]):
        total += pnl
        out.append([at.strftime("%Y-%m-%dT%H:%M:%SZ"), float(total)])
    return out


def make_report(strategy: Strategy, day: date, *, alert: bool = True) -> DriftReport:
    """Compare `strategy`'s session `day` and store it (replacing an earlier report of it); an unexplained
    difference is alerted once per session."""
    data = load_session(strategy, day)
    ex, rows = compare(data)
    closed = [t for t in ex.result.trades if t["exit_reason"] != "end_of_data"]
    backtest_points = [(datetime.strptime(t["exit_time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
                        Decimal(repr(t["pnl"]))) for t in closed]
    live_trades = Trade.objects.filter(strategy=strategy, session_date=day)
    live_points = list(live_trades.values_list("exit_time", "pnl"))
    top = [r for r in rows if r["kind"] != Kind.MATCHED and r["follows"] is None]
    unexplained = [r for r in top if r["reason"] == Reason.UNEXPLAINED]
    with transaction.atomic():
        report, _ = DriftReport.objects.update_or_create(strategy=strategy, session_date=day, defaults=dict(
            bars=data.bars, matched=sum(1 for r in rows if r["kind"] == Kind.MATCHED), differences=len(top),
            unexplained=len(unexplained), backtest_pnl=sum((p for _, p in backtest_points), Decimal(0)),
            live_pnl=live_trades.aggregate(s=Sum("pnl"))["s"] or Decimal(0),
            equity={"backtest": _equity(backtest_points), "live": _equity(live_points)}, notes=data.notes))
        report.items.all().delete()
        made: list[DriftItem] = []
        for r in rows:
            bt, live = r["backtest"], r["live"]
            made.append(DriftItem.objects.create(
                report=report, kind=r["kind"], root=r["root"], action=r["action"], bar_time=r["bar_time"],
                exit_reason=r["exit_reason"], backtest_time=bt.fill[0] if bt and bt.fill else None,
                backtest_price=bt.fill[1] if bt and bt.fill else None,
                live_time=live.fill[0] if live and live.fill else None,
                live_price=live.fill[1] if live and live.fill else None,
                live_state=live.state if live else _refused_state(data, r),
                reason=r["reason"], detail=r["detail"],
                follows=made[r["follows"]] if r["follows"] is not None else None,
                signal=(live.signal if live else data.refused.get((r["root"], r["bar_time"])) if r["action"] == "buy"
                        else None)))
    log.info("drift report strategy=%s session=%s matched=%d differences=%d unexplained=%d", strategy.name, day,
             report.matched, report.differences, report.unexplained)
    if alert and unexplained:
        lines = [f"{r['root']} {r['action']} {r['bar_time']:%Y-%m-%d %H:%M} UTC: {r['kind'].replace('_', ' ')}"
                 for r in unexplained]
        enqueue("emergency", f"{strategy.name}: {len(unexplained)} unexplained difference(s) from the backtest "
                             f"on {day}", strategy=strategy, body="\n".join(lines[:20]),
                dedupe_key=f"drift:{strategy.name}:{day}")
    return report


def _refused_state(data: SessionData, row: dict) -> str:
    sig = data.refused.get((row["root"], row["bar_time"])) if row["action"] == "buy" else None
    return signal_state(sig) if sig is not None else ""


def last_closed_session(strategy: Strategy) -> date | None:
    """The latest session the data's clock (the worker's last decided hour) has seen close, or None."""
    until = decided_until(strategy)
    if until is None:
        return None
    now = until + timedelta(hours=1)
    day = session_date(now - timedelta(hours=1))
    return day if session_close(day) <= now else previous_trade_date(day)


def report_closed_sessions() -> dict[str, str]:
    """The beat task's body: each strategy's last closed session, reported once."""
    done = {}
    for strategy in Strategy.objects.select_related("cursor").order_by("name"):
        day = last_closed_session(strategy)
        if day is None or DriftReport.objects.filter(strategy=strategy, session_date=day).exists():
            continue
        report = make_report(strategy, day)
        done[strategy.name] = f"{day}: {report.differences} differences, {report.unexplained} unexplained"
    return done

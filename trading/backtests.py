"""Backtests asked for in the admin, run by Celery: the bar store's hourly bars of the run's sessions through
the functions `python -m strategies.backtest` runs (validate_bars, ml.scores, run, report), with the strategy's
parameters, costs, limits and ML filter from the database. It writes only its own BacktestRun row, and a
second run of the task for one row changes nothing: the row is claimed first and the report is replaced whole.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, replace
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from strategies import ml
from strategies.backtest import BacktestInputError, Leg, report, run, validate_bars
from strategies.calendar import session_end, session_open
from strategies.params import ParameterError
from trading.models import BacktestRun, StoredBar, StrategyInstrument
from trading.models.backtests import TIMEFRAME, no_bars_message

log = logging.getLogger(__name__)
NS = 1_000_000_000
STALE = timedelta(minutes=15)  # a running backtest silent this long lost its Celery worker: claimable again
State = BacktestRun.State


class BacktestFailed(Exception):
    """A backtest that cannot run as asked; the message says what to change."""


def run_backtest(run_id: int) -> str:
    """Claim the run (queued, or running but silent for STALE), backtest it and store its report or its error.
    Returns the run's state; a run done, failed or in the hands of a live task is left as it is."""
    now = timezone.now()
    claimable = Q(state=State.QUEUED) | Q(state=State.RUNNING, updated_at__lt=now - STALE)
    if not BacktestRun.objects.filter(claimable, pk=run_id).update(
            state=State.RUNNING, started_at=now, updated_at=now, progress=0, progress_text="starting", error=""):
        state = BacktestRun.objects.filter(pk=run_id).values_list("state", flat=True).first()
        log.info("backtest not claimed run=%s state=%s", run_id, state)
        return state or "missing"
    row = BacktestRun.objects.select_related("strategy", "instrument").get(pk=run_id)
    log.info("backtest started run=%s strategy=%s instrument=%s sessions=%s..%s", run_id, row.strategy.name,
             row.instrument.root if row.instrument_id else "all", row.start_date, row.end_date)
    try:
        fields = backtest(row, lambda percent, text: _progress(run_id, percent, text))
    except (BacktestFailed, BacktestInputError, ParameterError, ml.ModelError) as exc:
        return _fail(run_id, str(exc))
    except Exception as exc:  # noqa: BLE001 — stored on the row for the operator, and logged with its traceback
        log.exception("backtest crashed run=%s", run_id)
        return _fail(run_id, f"unexpected error: {exc.__class__.__name__}: {exc}")
    metrics = fields["metrics"]
    BacktestRun.objects.filter(pk=run_id, state=State.RUNNING).update(
        state=State.DONE, progress=100, finished_at=timezone.now(), updated_at=timezone.now(),
        progress_text=f"done: {metrics['trades']} trades over {fields['bars']} hourly bars", **fields)
    log.info("backtest done run=%s trades=%s total_pnl=%s", run_id, metrics["trades"], metrics["total_pnl"])
    return State.DONE


def backtest(row: BacktestRun, progress=lambda percent, text: None) -> dict:
    """The report fields of `row`: its legs' bars and terms, ML scores, strategies.backtest.run and report."""
    rows = list(row.legs())
    if not rows:
        raise BacktestFailed(f"{row.strategy.name} has no enabled instrument; pick one of its instruments")
    start, end = session_open(row.start_date), session_end(row.end_date)
    progress(2, f"loading the hourly bars of {', '.join(r.instrument.root for r in rows)}")
    frames = {r.instrument.root: stored_frame(r.instrument.root, start, end) for r in rows}
    missing = [root for root, frame in frames.items() if frame.empty]
    if missing:
        raise BacktestFailed(no_bars_message(missing, row.start_date, row.end_date, list(frames)))
    frames = {root: validate_bars(frame, f"{root} hourly bars of the bar store") for root, frame in frames.items()}
    legs = [Leg(r.instrument.root, frames[r.instrument.root], r.params(), float(r.instrument.point_value),
                float(Decimal(r.commission_per_side)), r.size) for r in rows]
    notes: list[str] = []
    if row.use_ml:
        legs = with_scores(row, rows, legs, frames, start, end, notes, progress)
    hours = len({int(ts) for frame in frames.values() for ts in frame["ts"]})
    progress(40, f"backtesting {len(legs)} instrument(s) over {hours} bar times")
    result = run(legs, timeframe=row.strategy.timeframe, max_positions=row.strategy.max_positions, use_ml=row.use_ml,
                 progress=lambda done, total: progress(40 + 55 * done // max(total, 1),
                                                       f"backtesting: bar time {done} of {total}"))
    progress(96, "writing the report")
    return {"bars": result.bars, "metrics": plain(report(result)), "trades": plain(result.trades),
            "equity": equity_points(result.trades), "skipped": plain(result.skipped), "notes": notes,
            "terms": plain(terms(row, rows))}


def stored_frame(root: str, start, end) -> pd.DataFrame:
    """The bar store's hourly bars of `root` in [start, end), as the CLI reads a bars CSV."""
    data = list(StoredBar.objects.filter(root=root, timeframe=TIMEFRAME, ts__gte=start, ts__lt=end).order_by("ts")
                .values_list("ts", "open", "high", "low", "close", "volume"))
    return pd.DataFrame({"ts": np.array([int(r[0].timestamp()) * NS for r in data], dtype=np.int64),
                         **{name: [r[i] for r in data] for i, name in enumerate(("open", "high", "low", "close",
                                                                                 "volume"), start=1)}})


def with_scores(row: BacktestRun, rows: list[StrategyInstrument], legs: list[Leg], frames: dict, start, end,
                notes: list[str], progress) -> list[Leg]:
    """Each ML-enabled leg with its model's scores, from the bars of the instruments the worker's model reads
    (the strategy's enabled ones); a model that cannot load or score follows its failure policy, as live."""
    features = dict(frames)
    for leg in row.strategy.legs.filter(enabled=True).select_related("instrument"):
        root = leg.instrument.root
        if root not in features:
            frame = stored_frame(root, start, end)
            if not frame.empty:
                features[root] = validate_bars(frame, f"{root} hourly bars of the bar store")
    by_root = {r.instrument.root: r for r in rows}
    out = []
    for i, leg in enumerate(legs):
        setting = by_root[leg.root]
        if not setting.ml_enabled:
            out.append(leg)
            continue
        progress(10 + 30 * i // len(legs), f"ML scores of {leg.root}")
        try:
            scores = ml.scores(features, leg.root, settings.MODELS_DIR)
        except ml.ModelError as exc:
            policy = setting.get_ml_failure_policy_display()
            notes.append(f"{leg.root}: ML model unavailable ({exc}); policy: {policy}")
            log.warning("backtest model unavailable run=%s root=%s policy=%s error=%s", row.pk, leg.root,
                        setting.ml_failure_policy, exc)
            skip = setting.ml_failure_policy == StrategyInstrument.ModelFailurePolicy.SKIP_ENTRIES
            out.append(replace(leg, ml_scores=np.full(len(leg.bars), np.nan) if skip else None))
            continue
        out.append(replace(leg, ml_scores=scores))
    return out


def terms(row: BacktestRun, rows: list[StrategyInstrument]) -> dict:
    """What the run traded with, kept with its report (configuration changes later)."""
    return {"max_positions": row.strategy.max_positions, "timeframe": row.strategy.timeframe, "ml": row.use_ml,
            "legs": {r.instrument.root: {**asdict(r.params()), "size": r.size,
                                         "commission_per_side": str(r.commission_per_side),
                                         "point_value": str(r.instrument.point_value), "ml_enabled": r.ml_enabled,
                                         "ml_failure_policy": r.ml_failure_policy} for r in rows}}


def equity_points(trades: list[dict]) -> list[list]:
    """[[exit time, cumulative P&L $]] in trade order, summed to the cent (each trade's P&L is to the cent)."""
    total, points = Decimal("0"), []
    for t in trades:
        total += Decimal(str(t["pnl"])).quantize(Decimal("0.01"))
        points.append([t["exit_time"], float(total)])
    return points


def plain(value):
    """JSON a database takes: numpy numbers as Python's, NaN and infinities as null (PostgreSQL refuses NaN)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _progress(run_id: int, percent: int, text: str) -> None:
    BacktestRun.objects.filter(pk=run_id, state=State.RUNNING).update(
        progress=max(0, min(int(percent), 99)), progress_text=text[:200], updated_at=timezone.now())


def _fail(run_id: int, message: str) -> str:
    BacktestRun.objects.filter(pk=run_id, state=State.RUNNING).update(
        state=State.FAILED, error=message, finished_at=timezone.now(), updated_at=timezone.now(),
        progress_text="failed")
    log.error("backtest failed run=%s error=%s", run_id, message)
    return State.FAILED

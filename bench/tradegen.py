"""A year of generated trade history for the admin bench: closed trades of the demo legs with their
entry and exit signals, and a few open positions, written as the worker writes them.

Seeding only ever goes into the bench's throw-away database, never one that holds real trades.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

# Rough price levels of the demo roots a year ago, and annual volatility (log returns).
BASE_PRICE = {"6A": 0.66, "6B": 1.27, "6C": 0.74, "6M": 0.058, "6N": 0.61, "6S": 1.13, "CL": 75.0, "GC": 2350.0,
              "HG": 4.4, "SI": 29.0, "YM": 39500.0, "ES": 5300.0}
ANNUAL_VOL = {"6A": 0.09, "6B": 0.07, "6C": 0.06, "6M": 0.13, "6N": 0.09, "6S": 0.07, "CL": 0.32, "GC": 0.16,
              "HG": 0.24, "SI": 0.28, "YM": 0.14, "ES": 0.16}
BAR_MINUTES, SESSION_HOURS_PER_YEAR = 60, 252 * 23
# Assumed share of each exit reason: mostly the IBS exit, then stop, target and the time-outs.
EXIT_REASONS = ("ibs_exit", "stop_loss", "take_profit", "max_bars", "flat_time")
EXIT_SHARE = (0.55, 0.15, 0.15, 0.10, 0.05)


@dataclass
class LegInfo:
    """One leg of the demo configuration (a strategy's instrument), as the generated trades use it."""

    strategy: object
    instrument: object
    size: int
    commission: Decimal
    row: object  # the StrategyInstrument: each order's ticker from its template


def demo_legs() -> list[LegInfo]:
    from trading.models import StrategyInstrument

    return [LegInfo(leg.strategy, leg.instrument, leg.size, leg.commission_per_side, leg)
            for leg in StrategyInstrument.objects.select_related("strategy", "instrument").order_by("id")]


def front_contract(root: str, when: datetime) -> str:
    """The quarterly contract after `when`'s month (H M U Z), as trading.sim.market names it."""
    from strategies.instruments import MONTH_CODES

    month = when.month + 1
    year = when.year
    while month % 3:
        month += 1
    if month > 12:
        month, year = month - 12, year + 1
    return f"{root}{MONTH_CODES[month - 1]}{year % 10}"


def round_tick(value: float, tick: Decimal) -> Decimal:
    return (Decimal(str(value)) / tick).quantize(Decimal("1")) * tick


def generate_trades(legs: list[LegInfo], n: int, now: datetime, seed: int) -> list[dict]:
    """n closed trades over the last year, spread over the legs; per leg they never overlap.

    Entry times sit on even minutes of weekdays (so every leg's entries and exits are distinct,
    as the signal constraint one_signal_per_bar_and_action requires); holding times are
    log-normal around 4 hours, at most max_bars_held bars; prices follow a random walk per root
    with its volatility; exit reasons follow EXIT_SHARE (stops and targets exit at the default
    stop / target percent); P&L is the model's formula (trading.models.trade_pnl).
    """
    import numpy as np

    from strategies.calendar import session_dates
    from strategies.params import IBSParams
    from trading.models import trade_pnl

    params = IBSParams()
    stop, target, max_hold = params.stop_loss_pct / 100, params.take_profit_pct / 100, \
        params.max_bars_held * BAR_MINUTES
    reason_cdf = np.cumsum(EXIT_SHARE)[:-1]
    rng = np.random.default_rng(seed)
    start = now - timedelta(days=365)
    start_min = int(start.timestamp() // 60)
    end_min = int((now - timedelta(hours=3)).timestamp() // 60)
    grid = np.arange(start_min + (start_min % 2), end_min, 2, dtype=np.int64)  # even minutes
    weekday = ((grid // 1440) + 3) % 7 < 5  # 1970-01-01 was a Thursday (index 3, Monday = 0)
    grid = grid[weekday]
    per_leg = rng.multinomial(n, rng.dirichlet(np.full(len(legs), 8.0)))
    if per_leg.max() > len(grid):
        raise SystemExit(f"--trades {n} is more than this generator fits in a year ({len(grid)} per leg)")
    now_min = int(now.timestamp() // 60)
    trades = []
    for leg, k in zip(legs, per_leg):
        if not k:
            continue
        root = leg.instrument.root
        entry_min = np.sort(rng.choice(grid, size=k, replace=False))
        gaps = np.diff(np.append(entry_min, now_min))
        hold = np.minimum(np.clip(rng.lognormal(math.log(240), 0.8, size=k).astype(np.int64), 1, gaps - 1), max_hold)
        exit_min = entry_min + hold
        years = np.diff(np.insert(entry_min, 0, start_min)) / (365 * 1440)
        log_price = math.log(BASE_PRICE.get(root, 100.0)) + np.cumsum(
            rng.normal(0, ANNUAL_VOL.get(root, 0.2), size=k) * np.sqrt(years))
        vol = ANNUAL_VOL.get(root, 0.2)
        ret = 0.0003 + rng.normal(0, 1, size=k) * vol * np.sqrt(hold / BAR_MINUTES / SESSION_HOURS_PER_YEAR)
        kind = rng.random(size=k)
        exit_ns = exit_min * 60_000_000_000
        days = session_dates(exit_ns)
        for i in range(k):
            entry_t = datetime.fromtimestamp(int(entry_min[i]) * 60, dt_timezone.utc)
            exit_t = datetime.fromtimestamp(int(exit_min[i]) * 60, dt_timezone.utc)
            r = float(ret[i])
            reason = EXIT_REASONS[int(np.searchsorted(reason_cdf, kind[i], side="right"))]
            if reason == "stop_loss":
                r = -stop
            elif reason == "take_profit":
                r = target
            tick = leg.instrument.tick_size
            entry_p = round_tick(math.exp(log_price[i]), tick)
            exit_p = max(round_tick(float(entry_p) * (1 + r), tick), tick)
            trades.append(dict(
                leg=leg, root=root, contract=front_contract(root, entry_t), entry_time=entry_t, exit_time=exit_t,
                entry_price=entry_p, exit_price=exit_p, reason=reason,
                pnl=trade_pnl(entry_p, exit_p, leg.instrument.point_value, leg.size, leg.commission),
                pnl_percent=float((exit_p - entry_p) / entry_p * 100),
                ml_score=round(float(rng.uniform(0.5, 0.95)), 4), ibs_entry=round(float(rng.uniform(0, 0.2)), 4),
                ibs_exit=round(float(rng.uniform(0.7, 1.0) if reason == "ibs_exit" else rng.uniform(0, 1)), 4),
                session_date=days[i].astype(object)))
    return trades


class RowWriter:
    """Rows of one model straight to the database: the columns every row shares prepared once from a
    prototype instance, the others converted per row the way Django's own save prepares them, then one
    executemany per batch with the primary keys given (so the trades can name their signals). Django's
    bulk_create prepares every field of every object and compiles its SQL per batch: a million trades with
    their two million signals took it a quarter of an hour."""

    def __init__(self, model, prototype, varying: list[str]):
        from django.db import connection

        self.model, self.connection = model, connection
        self.fields = model._meta.concrete_fields
        self.varying = varying
        self.columns = [f.column for f in self.fields]
        self.const = {f.attname: f.get_db_prep_save(f.pre_save(prototype, True), connection)
                      for f in self.fields if f.attname not in varying}
        by_name = {f.attname: f for f in self.fields}
        self.convert = [self._converter(by_name[name]) for name in varying]
        quote = connection.ops.quote_name
        self.sql = (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(c) for c in self.columns)}) "
                    f"VALUES ({', '.join(['%s'] * len(self.columns))})")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT MAX({quote(model._meta.pk.column)}) FROM {quote(model._meta.db_table)}")
            self.next_id = (cursor.fetchone()[0] or 0) + 1

    def _converter(self, field):
        ops, kind = self.connection.ops, field.get_internal_type()
        if kind == "DateTimeField":
            return ops.adapt_datetimefield_value
        if kind == "DecimalField":
            return lambda v: ops.adapt_decimalfield_value(v, field.max_digits, field.decimal_places)
        if kind in ("JSONField", "DateField"):
            return lambda v: field.get_db_prep_save(v, self.connection)
        return lambda v: v

    def write(self, rows: list[tuple]) -> list[int]:
        """Insert rows (values in the order of `varying`); returns their primary keys."""
        pk = self.model._meta.pk.attname
        ids = list(range(self.next_id, self.next_id + len(rows)))
        self.next_id += len(rows)
        order = [(name in self.const, name) for name in (f.attname for f in self.fields)]
        index = {name: i for i, name in enumerate(self.varying)}
        out = []
        for row_id, row in zip(ids, rows):
            values = [self.convert[i](v) for i, v in enumerate(row)]
            out.append([row_id if name == pk else self.const[name] if shared else values[index[name]]
                        for shared, name in order])
        with self.connection.cursor() as cursor:
            cursor.executemany(self.sql, out)
        return ids

    def finish(self) -> None:
        """Move the table's id sequence past the ids given (PostgreSQL; SQLite follows MAX(id) by itself)."""
        from django.core.management.color import no_style

        statements = self.connection.ops.sequence_reset_sql(no_style(), [self.model])
        with self.connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)


def insert_trades(trades: list[dict], batch: int) -> None:
    """Insert the trades with their entry and exit signals, in exit-time order (as written live), and the
    daily summary each booked exit keeps."""
    from django.db import transaction

    from strategies.params import IBSParams
    from trading.execution.traderspost import order_payload
    from trading.models import Signal, Trade, signal_key

    hour, params = timedelta(minutes=BAR_MINUTES), IBSParams()
    tickers: dict[tuple, str] = {}

    def ticker(leg, contract, when):
        k = (leg.row.pk, contract, when.year)
        if k not in tickers:  # a query per order otherwise (the contract's expiration)
            tickers[k] = leg.row.broker_ticker(contract, when)
        return tickers[k]

    signal_fields = ["key", "strategy_id", "instrument_id", "contract", "bar_time", "action", "quantity",
                     "signal_price", "reason", "ibs", "ml_score", "payload", "expires_at", "sent_at"]

    def signal(t, action):
        leg, bar_time = t["leg"], (t["entry_time"] if action == "buy" else t["exit_time"]) - hour
        key = signal_key(leg.strategy.name, t["root"], bar_time, action)
        price = t["entry_price"] if action == "buy" else t["exit_price"]
        reason = "entry" if action == "buy" else t["reason"]
        ibs = t["ibs_entry"] if action == "buy" else t["ibs_exit"]
        ml = t["ml_score"] if action == "buy" else None
        extras = {"strategy": leg.strategy.name, "signal_id": key, "bar_time": bar_time.isoformat(), "ibs": ibs,
                  "ml_score": ml, "reason": reason}
        payload = order_payload(ticker=ticker(leg, t["contract"], bar_time), action=action, quantity=leg.size,
                                signal_price=float(price),
                                extras=extras, stop_loss_percent=params.stop_loss_pct if action == "buy" else None,
                                take_profit_percent=params.take_profit_pct if action == "buy" else None)
        decided = bar_time + hour
        return (key, leg.strategy.pk, leg.instrument.pk, t["contract"], bar_time, action, leg.size, price, reason, ibs,
                ml, payload, decided + timedelta(hours=8), decided + timedelta(seconds=1))

    trade_fields = ["strategy_id", "symbol", "contract", "entry_time", "entry_price", "entry_size", "exit_time",
                    "exit_price", "exit_size", "pnl", "pnl_percent", "exit_reason", "ml_score", "ibs_entry",
                    "ibs_exit", "commission", "point_value", "session_date", "entry_signal_id", "exit_signal_id"]
    trades = sorted(trades, key=lambda t: t["exit_time"])
    with transaction.atomic():
        signals = RowWriter(Signal, Signal(state=Signal.State.SENT, attempts=1, last_status=200), signal_fields)
        rows = RowWriter(Trade, Trade(side="long"), trade_fields)
        for i in range(0, len(trades), batch):
            chunk = trades[i:i + batch]
            entries = signals.write([signal(t, "buy") for t in chunk])
            exits = signals.write([signal(t, "exit") for t in chunk])
            rows.write([(t["leg"].strategy.pk, t["root"], t["contract"], t["entry_time"], t["entry_price"],
                         t["leg"].size, t["exit_time"], t["exit_price"], t["leg"].size, t["pnl"], t["pnl_percent"],
                         t["reason"], t["ml_score"], t["ibs_entry"], t["ibs_exit"],
                         2 * t["leg"].commission * t["leg"].size, t["leg"].instrument.point_value,
                         t["session_date"], e, x) for t, e, x in zip(chunk, entries, exits)])
        signals.finish()
        rows.finish()
        book_days(trades)


def book_days(trades: list[dict]) -> None:
    """The daily summary each booked exit keeps (trading.risk.daily.record_realized), for the inserted trades
    at once: a row per strategy and session with its P&L, trades, winners, gross win and gross loss."""
    from decimal import Decimal

    from trading.models import DailyRiskState

    days: dict[tuple, DailyRiskState] = {}
    for t in trades:
        strategy, pnl = t["leg"].strategy, Decimal(str(t["pnl"]))
        row = days.setdefault((strategy.pk, t["session_date"]), DailyRiskState(
            strategy=strategy, session_date=t["session_date"], realized_pnl=Decimal(0), won=Decimal(0), lost=Decimal(0)))
        row.realized_pnl += pnl
        row.trades += 1
        row.wins += pnl > 0
        row.won += max(pnl, Decimal(0))
        row.lost += min(pnl, Decimal(0))
    from django.db.models import F

    existing = set(DailyRiskState.objects.values_list("strategy_id", "session_date"))
    for (strategy_id, day), row in days.items():
        if (strategy_id, day) in existing:  # a session of trades inserted before: added to, as each exit does
            DailyRiskState.objects.filter(strategy_id=strategy_id, session_date=day).update(
                realized_pnl=F("realized_pnl") + row.realized_pnl, trades=F("trades") + row.trades,
                wins=F("wins") + row.wins, won=F("won") + row.won, lost=F("lost") + row.lost)
    DailyRiskState.objects.bulk_create([r for k, r in days.items() if k not in existing], batch_size=2000)


def seed_open_positions(legs: list[LegInfo], now: datetime) -> list[str]:
    """A few open positions (as the dashboard shows them) and the hub's last prices of their roots in Redis."""
    import json

    from trading.models import Position, Signal, signal_key
    from trading.redis_client import get_redis, key

    by_strategy: dict[str, list[LegInfo]] = {}
    for leg in legs:
        by_strategy.setdefault(leg.strategy.name, []).append(leg)
    bar_time = (now - timedelta(minutes=90)).replace(second=0, microsecond=0)
    if bar_time.minute % 2 == 0:  # odd minute: never one of a generated trade's entry bars
        bar_time -= timedelta(minutes=1)
    roots = []
    for name, mine in by_strategy.items():
        for leg in mine[:mine[0].strategy.max_positions]:
            root = leg.instrument.root
            price = round_tick(BASE_PRICE.get(root, 100.0), leg.instrument.tick_size)
            sig = Signal.objects.create(
                key=signal_key(name, root, bar_time, "buy"), strategy=leg.strategy, instrument=leg.instrument,
                contract=front_contract(root, now), bar_time=bar_time, action="buy", quantity=leg.size,
                signal_price=price, reason="entry", state=Signal.State.SENT, attempts=1, last_status=200)
            Position.objects.create(
                strategy=leg.strategy, instrument=leg.instrument, contract=sig.contract, size=leg.size,
                signal_time=bar_time, filled=True, entry_time=bar_time + timedelta(hours=1), entry_price=price,
                commission_per_side=leg.commission, point_value=leg.instrument.point_value, entry_signal=sig)
            roots.append(root)
    try:
        get_redis().mset({key("last", root): json.dumps({"close": float(BASE_PRICE.get(root, 100.0)) * 1.001})
                          for root in roots})
    except Exception as exc:  # noqa: BLE001 — the dashboard then shows "prices unavailable"; still measurable
        print(f"note: Redis unreachable ({exc.__class__.__name__}); the dashboard renders without last prices")
    return roots


def seed_hourly_bars(legs: list[LegInfo], now: datetime, sessions: int = 3) -> int:
    """The bar store's hourly bars of every leg's root over the last `sessions` CME sessions, as the hub stores
    them (the dashboard's market panels chart them and mark the trades on them); returns how many."""
    from strategies.calendar import session_date, session_open, trade_date_offset
    from trading.models import StoredBar

    since = session_open(trade_date_offset(session_date(now), -(sessions - 1)))
    hours = int((now - since).total_seconds() // 3600)
    rows = []
    for leg in {leg.instrument.root: leg for leg in legs}.values():
        root, tick = leg.instrument.root, leg.instrument.tick_size
        base = float(BASE_PRICE.get(root, 100.0))
        for h in range(hours):
            ts = since + timedelta(hours=h)
            close, step = float(round_tick(base * (1 + 0.002 * math.sin(h / 5)), tick)), float(tick)
            rows.append(StoredBar(root=root, timeframe="1h", ts=ts, contract=front_contract(root, ts), open=close,
                                  high=close + 2 * step, low=close - 2 * step, close=close, volume=1000, source="hub"))
    StoredBar.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


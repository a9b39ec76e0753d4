"""The dashboard's market panels: one per instrument the enabled strategies trade, with its front contract,
the last bar the hub published (time and price), the hourly bars stored this session, a stale marker, and a
price chart of the last sessions with the trades' entries and exits marked.

"Stale": the instrument's market is open at the market's clock and its last bar ended more than
PINEOPS_FEED_GAP_MINUTES before it (the hub's own feed-gap rule); outside its trading hours it reads
"closed". The last bar is the hub's 1-minute bar in Redis; without Redis, the latest hourly bar stored.
The trades are marked one marker per hour bar and kind (entry, exit), counted by the database: the page reads
as fast with thousands of trades in the chart's sessions as with a few.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db.models import Avg, CharField, Count, FloatField, Func, Max, Min
from django.utils.safestring import SafeString

from strategies.calendar import is_trading, session_open, trade_date_offset
from trading.admin.trades import at_tick
from trading.charts import Marker, line_chart
from trading.models import Instrument, Position, StoredBar, Strategy, Trade
from trading.redis_client import get_redis, key

UTC = timezone.utc
CHART_SESSIONS = 3
# The newest trades of the charts' sessions that are marked: beyond them (thousands of trades in three sessions)
# the hours are full of markers anyway, and the page must not read every trade; the panel says from when.
MARKED_TRADES = 1000


@dataclass
class Panel:
    instrument: Instrument
    last_time: datetime | None  # end of the last bar
    last_price: str
    last_contract: str
    last_source: str  # "hub" (Redis, 1-minute) or "bar store" (hourly)
    bars_session: int
    state: str  # "ok", "stale" or "closed"
    chart: SafeString
    markers: int  # trades and open positions marked on the chart
    marked_from: datetime | None = None  # set when only the newest MARKED_TRADES trades are marked: from this exit


def _hub_last(roots: list[str]) -> dict[str, dict] | None:
    try:
        values = get_redis().mget([key("last", root) for root in roots])
    except Exception:  # noqa: BLE001 — the page must render without Redis
        return None
    out = {}
    for root, value in zip(roots, values):
        try:
            bar = json.loads(value) if value else None
            if bar:
                out[root] = {"end": datetime.fromisoformat(bar["ts"].replace("Z", "+00:00")) + timedelta(minutes=1),
                             "close": bar["close"], "contract": bar.get("contract", "")}
        except (KeyError, TypeError, ValueError):
            continue  # a garbled value reads as no bar, never as a price
    return out


def instruments() -> list[Instrument]:
    traded = Instrument.objects.filter(strategy_legs__strategy__enabled=True).distinct().order_by("root")
    return list(traded) or list(Instrument.objects.filter(strategy_legs__isnull=False).distinct().order_by("root"))


def market_panels(market: datetime, session) -> tuple[list[Panel], bool]:
    """(a panel per instrument, whether Redis answered)."""
    items = instruments()
    roots = [i.root for i in items]
    if not roots:
        return [], True
    hub = _hub_last(roots)
    opened = session_open(session)
    since = session_open(trade_date_offset(session, -(CHART_SESSIONS - 1)))
    counts = dict(StoredBar.objects.filter(root__in=roots, timeframe="1h", ts__gte=opened, ts__lte=market)
                  .values_list("root").annotate(n=Count("id")))
    bars: dict[str, list[tuple[datetime, float, str]]] = {r: [] for r in roots}
    for root, ts, close, contract in (StoredBar.objects.filter(root__in=roots, timeframe="1h", ts__gte=since,
                                                                ts__lte=market)
                                      .order_by("root", "ts").values_list("root", "ts", "close", "contract")):
        bars[root].append((ts, close, contract))
    cutoff = marked_since(roots, since)
    trades = trades_by_hour(roots, since, cutoff)
    positions = list(Position.objects.open().filter(instrument__root__in=roots, entry_time__gte=since)
                     .select_related("instrument", "strategy"))
    names = {s.pk: str(s) for s in Strategy.objects.all()}
    gap = timedelta(minutes=settings.FEED_GAP_MINUTES)
    panels = []
    for inst in items:
        root, tick = inst.root, inst.tick_size
        mine = bars[root]
        last = (hub or {}).get(root)
        if last:
            end, price, contract, source = last["end"], Decimal(str(last["close"])), last["contract"], "hub"
        elif mine:
            ts, close, contract = mine[-1]
            end, price, source = ts + timedelta(hours=1), Decimal(str(close)), "bar store"
        else:
            end, price, contract, source = None, None, "", ""
        if not is_trading(root, market):
            state = "closed"
        elif end is None or market - end > gap:
            state = "stale"
        else:
            state = "ok"
        markers, marked = _markers(root, tick, trades, positions, mine, names)
        decimals = max(0, -Decimal(tick).normalize().as_tuple().exponent)
        chart = line_chart({root: [(_x(ts), close) for ts, close, _ in mine]}, money=False, decimals=decimals,
                           markers=markers, width=400, height=170, label=f"{root} hourly closes") if mine else \
            SafeString("")
        panels.append(Panel(inst, end, at_tick(price, tick), contract, source, counts.get(root, 0), state, chart,
                            marked, cutoff if cutoff > since and mine else None))
    return panels, hub is not None


def _x(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


class HourOf(Func):
    """The UTC hour a stored time falls in, as text 'YYYY-MM-DD HH' (SQLite keeps UTC times as such text)."""
    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, template="substr(%(expressions)s, 1, 13)", **extra)


class HourTrades(NamedTuple):
    """The trades of one root entered (or exited) in one hour: how many, their mean and range of prices."""
    root: str
    hour: datetime
    kind: str  # "entry" or "exit"
    n: int
    price: float  # their mean price, where the marker sits
    low: float
    high: float
    strategy: int  # the first strategy id (the trade's, when n is 1)
    reason: str  # the first exit reason (the trade's, when n is 1; "" for entries)


def marked_since(roots: list[str], since: datetime) -> datetime:
    """The exit time from which the charts mark the roots' trades: `since`, or that of the newest
    MARKED_TRADES-th trade when more exited since (found on the list's index, never counting them all)."""
    beyond = (Trade.objects.filter(symbol__in=roots, exit_time__gte=since).order_by("-exit_time", "-id")
              .values_list("exit_time", flat=True)[MARKED_TRADES - 1:MARKED_TRADES])
    return max([since, *beyond])


def trades_by_hour(roots: list[str], since: datetime, exited_from: datetime | None = None) -> list[HourTrades]:
    """Entries and exits from `since` on of the roots' trades that exited from `exited_from` (default `since`),
    grouped by root, hour and kind in the database (a trade entered in the window exited in it too, or later: its
    exit time alone finds it, on an index). Prices come as floats: they place markers, and a title shows them
    to the tick."""
    window = Trade.objects.filter(symbol__in=roots, exit_time__gte=exited_from or since).order_by()
    out = []
    for kind, time, price, reason in (("entry", "entry_time", "entry_price", "symbol"),
                                      ("exit", "exit_time", "exit_price", "exit_reason")):
        rows = (window.filter(**{f"{time}__gte": since}).annotate(hour=HourOf(time)).values("symbol", "hour")
                .annotate(n=Count("id"), price=Avg(price, output_field=FloatField()),
                          low=Min(price, output_field=FloatField()), high=Max(price, output_field=FloatField()),
                          strategy=Min("strategy_id"), reason=Min(reason))
                .values_list("symbol", "hour", "n", "price", "low", "high", "strategy", "reason"))
        for root, hour, n, mean, low, high, strategy, why in rows:
            at = datetime(int(hour[:4]), int(hour[5:7]), int(hour[8:10]), int(hour[11:13]), tzinfo=UTC)
            out.append(HourTrades(root, at, kind, n, mean, low, high, strategy, why if kind == "exit" else ""))
    return out


def float_at_tick(value: float, tick, decimals: int | None = None) -> str:
    """at_tick for a float price (the database's mean or bound of a group): the tick's decimals, more only when
    the price has them, read off the float's shortest form without a Decimal's cost."""
    text = repr(value)
    if "e" in text or "." not in text:
        return at_tick(Decimal(text), tick)
    if decimals is None:
        decimals = max(0, -Decimal(tick).normalize().as_tuple().exponent)
    return f"{value:,.{max(decimals, len(text.split('.')[1].rstrip('0')))}f}"


def _markers(root: str, tick, trades: list[HourTrades], positions, bars, names: dict) -> tuple[list[Marker], int]:
    """Entries and exits inside the chart's hours, each at the hour bar it happened in: one marker per hour and
    kind (titled with the trade, or with how many and their range); second, how many trades and positions
    they mark."""
    if not bars:
        return [], 0
    first, last = bars[0][0], bars[-1][0] + timedelta(hours=1)
    out, marked = [], 0

    decimals = max(0, -Decimal(tick).normalize().as_tuple().exponent)

    def price(value: float) -> str:
        return float_at_tick(value, tick, decimals)

    for h in trades:
        if h.root != root or not first <= h.hour < last:
            continue
        marked += h.n
        if h.n == 1:
            title = f"{names.get(h.strategy, '?')} {h.kind} {price(h.low)}" + (f" ({h.reason})" if h.kind == "exit" else "")
        else:
            title = f"{h.n} {'exits' if h.kind == 'exit' else 'entries'} {price(h.low)} to {price(h.high)}"
        out.append(Marker(_x(h.hour), h.price, h.kind, title))
    for p in positions:
        if p.instrument.root == root and first <= p.entry_time < last:
            out.append(Marker(_x(p.entry_time.replace(minute=0, second=0, microsecond=0)), float(p.entry_price),
                              "entry", f"{p.strategy} entry {at_tick(p.entry_price, tick)} (open)"))
            marked += 1
    return out, marked

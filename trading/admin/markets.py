"""The dashboard's market panels: one per instrument the enabled strategies trade, with its front contract,
the last bar the hub published (time and price), the hourly bars stored this session, a stale marker, and a
price chart of the last sessions with the trades' entries and exits marked.

"Stale": the instrument's market is open at the market's clock and its last bar ended more than
PINEOPS_FEED_GAP_MINUTES before it (the hub's own feed-gap rule); outside its trading hours it reads
"closed". The last bar is the hub's 1-minute bar in Redis; without Redis, the latest hourly bar stored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from django.conf import settings
from django.db.models import Count
from django.utils.safestring import SafeString

from strategies.calendar import is_trading, session_open, trade_date_offset
from trading.admin.trades import at_tick
from trading.charts import Marker, line_chart
from trading.models import Instrument, Position, StoredBar, Trade
from trading.redis_client import get_redis, key

UTC = timezone.utc
CHART_SESSIONS = 3


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
    markers: int


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
    # (a trade entered in the window exited in it too, or later: its exit time alone finds it, on an index)
    trades = list(Trade.objects.filter(symbol__in=roots, exit_time__gte=since).select_related("strategy"))
    positions = list(Position.objects.open().filter(instrument__root__in=roots, entry_time__gte=since)
                     .select_related("instrument", "strategy"))
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
        markers = _markers(root, tick, trades, positions, mine)
        decimals = max(0, -Decimal(tick).normalize().as_tuple().exponent)
        chart = line_chart({root: [(_x(ts), close) for ts, close, _ in mine]}, money=False, decimals=decimals,
                           markers=markers, width=400, height=170, label=f"{root} hourly closes") if mine else \
            SafeString("")
        panels.append(Panel(inst, end, at_tick(price, tick), contract, source, counts.get(root, 0), state, chart,
                            len(markers)))
    return panels, hub is not None


def _x(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _markers(root: str, tick, trades, positions, bars) -> list[Marker]:
    """Entries and exits inside the chart's hours, each at the hour bar it happened in."""
    if not bars:
        return []
    first, last = bars[0][0], bars[-1][0] + timedelta(hours=1)
    out = []

    def mark(at: datetime, price: Decimal, kind: str, title: str):
        if first <= at < last:
            out.append(Marker(_x(at.replace(minute=0, second=0, microsecond=0)), float(price), kind, title))

    for t in trades:
        if t.symbol != root:
            continue
        mark(t.entry_time, t.entry_price, "entry", f"{t.strategy} entry {at_tick(t.entry_price, tick)}")
        mark(t.exit_time, t.exit_price, "exit", f"{t.strategy} exit {at_tick(t.exit_price, tick)} ({t.exit_reason})")
    for p in positions:
        if p.instrument.root == root:
            mark(p.entry_time, p.entry_price, "entry", f"{p.strategy} entry {at_tick(p.entry_price, tick)} (open)")
    return out

"""The market-data hub: Databento Live trades → front-month 1-minute, hourly and daily bars → Redis.

Spreads and back months never enter a bar; a minute without trades makes no bar (the gap is
counted); a bar is published only once time has passed its end (trade or heartbeat time), so
nothing downstream ever sees a bar twice or a bar still forming. After a dropped connection it
resubscribes with `start=` at the earliest unfinished minute and skips what it already built.
"""
from __future__ import annotations

import logging
import queue
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import databento_dbn as dbn

from strategies.bars import Bar, DailyAggregator, HourlyAggregator, MinuteBarBuilder
from strategies.calendar import session_date, session_date_ns, session_end, session_open
from trading.marketdata.roll import FrontMonth, Roll, parse_contract

log = logging.getLogger(__name__)
UTC = timezone.utc
NS = 1_000_000_000
MINUTE = 60 * NS
UNDEF_PRICE = dbn.UNDEF_PRICE
HOUR = 60 * MINUTE


@dataclass
class RootState:
    root: str
    front: FrontMonth
    minutes: MinuteBarBuilder
    hours: HourlyAggregator = field(default_factory=HourlyAggregator)
    days: DailyAggregator = field(default_factory=DailyAggregator)
    closed_through: int = 0  # ns: every trade before this is in a published minute
    session_end_ns: int = 0  # ns: end of the session of the trades being built
    minute_volume: Counter = field(default_factory=Counter)  # contract → volume of the open minute
    minute_of_volume: int = -1
    last_minute: Bar | None = None


class Hub:
    def __init__(self, fronts: dict[str, FrontMonth], *, publish, on_roll=None, on_watermark=None, flush=None):
        self.roots = {root: RootState(root, front, MinuteBarBuilder(root)) for root, front in fronts.items()}
        self.publish = publish  # callable(Bar) -> bool (False: duplicate)
        self.flush = flush or (lambda: None)  # a buffering publisher writes what it holds
        self.on_roll = on_roll or (lambda roll: None)
        # Called with the hour (ns) before which every hourly bar of every root is published.
        self.on_watermark = on_watermark or (lambda hour_ns: None)
        self.symbols: dict[int, str] = {}
        self._routes: dict[int, tuple[str, RootState | None, str]] = {}  # instrument_id → (raw, state, why not)
        self.counters: Counter = Counter()
        self.clock = 0  # ns: latest exchange time seen (trades and heartbeats)
        self._swept_minute = 0
        self._watermark = 0
        self.replay_until = 0  # ns: after a reconnect, trades up to here were seen before
        self.last_bar_time: datetime | None = None

    # --- records ------------------------------------------------------------------------------
    def process(self, rec) -> None:
        self.counters["records"] += 1
        if isinstance(rec, dbn.TradeMsg):
            self._trade(rec)
        elif isinstance(rec, dbn.SymbolMappingMsg):
            self.symbols[rec.instrument_id] = rec.stype_out_symbol
            self._routes.pop(rec.instrument_id, None)
        elif isinstance(rec, dbn.SystemMsg):
            self.counters["system"] += 1
            self.advance(rec.ts_event)
        elif isinstance(rec, dbn.ErrorMsg):
            self.counters["gateway_errors"] += 1
            log.error("gateway error: %s", rec.err)
        else:
            self.counters["other_records"] += 1

    def _route(self, instrument_id: int, ts: int) -> tuple[str, RootState | None, str] | None:
        """Where an instrument's trades go, worked out once per symbol mapping (None: unmapped)."""
        raw = self.symbols.get(instrument_id)
        if raw is None:
            return None
        if "-" in raw:
            route = (raw, None, "spread")
        else:
            parsed = parse_contract(raw, datetime.fromtimestamp(ts / NS, UTC).date())
            state = self.roots.get(parsed[0]) if parsed else None
            route = (raw, state, "" if state else "unknown")
        self._routes[instrument_id] = route
        return route

    def _trade(self, rec) -> None:
        ts = rec.ts_event
        route = self._routes.get(rec.instrument_id) or self._route(rec.instrument_id, ts)
        if route is None:
            self._bad("unmapped", f"instrument_id={rec.instrument_id} has no symbol mapping")
            return
        raw, state, why = route
        if state is None:
            if why == "spread":
                self.counters["spreads_dropped"] += 1
            else:
                self._bad("unknown_symbol", f"symbol={raw} is not a configured root")
            return
        price = rec.price
        if price == UNDEF_PRICE or price <= 0:
            self._bad("bad_price", f"symbol={raw} ts={ts} price={'UNDEF' if price == UNDEF_PRICE else price}")
            return
        if ts < state.closed_through:
            if ts <= self.replay_until:
                self.counters["replay_skipped"] += 1
            else:
                self._bad("out_of_order", f"symbol={raw} ts={ts} is before the built minute {state.closed_through}")
            return
        if ts > self.clock:
            self.advance(ts)
        if ts >= state.session_end_ns:
            self._session_boundary(state, ts)
        minute = ts - ts % MINUTE
        if minute != state.minute_of_volume:
            self._commit_volume(state)
            state.minute_of_volume = minute
        size = rec.size
        state.minute_volume[raw] += size
        front = state.front
        if not front.active:
            front.observe(raw, 0, session_date_ns(ts))
        if raw != front.active:
            self.counters["back_month_dropped"] += 1
            return
        self.counters["trades"] += 1
        bars = state.minutes.push(ts, price / 1e9, size, raw)
        for bar in bars:
            self._minute_done(state, bar)

    def _bad(self, what: str, detail: str) -> None:
        self.counters[what] += 1
        if self.counters[what] <= 20 or self.counters[what] % 1000 == 0:
            log.warning("hub dropped a record reason=%s %s (count=%d)", what, detail, self.counters[what])

    def _commit_volume(self, state: RootState) -> None:
        if state.minute_volume:
            day = session_date_ns(state.minute_of_volume)
            for contract, size in state.minute_volume.items():
                state.front.observe(contract, size, day)
            state.minute_volume = Counter()

    def _session_boundary(self, state: RootState, ts: int) -> None:
        now = datetime.fromtimestamp(ts / NS, UTC)
        new_session = session_date(now)
        if state.session_end_ns:  # a session closed: decide the roll before building the new one
            for bar in state.minutes.close_through(ts):
                self._minute_done(state, bar)
            self._commit_volume(state)
            roll = state.front.session_closed(new_session)
            if roll:
                self._rolled(roll)
        state.session_end_ns = int(session_end(new_session).timestamp()) * NS

    def _rolled(self, roll: Roll) -> None:
        self.counters["rolls"] += 1
        log.info("contract roll root=%s from=%s to=%s session=%s reason=%s", roll.root, roll.from_contract,
                 roll.to_contract, roll.session_date, roll.reason)
        try:
            self.on_roll(roll)
        except Exception as exc:  # noqa: BLE001 — recording the roll must not stop the bars
            log.error("roll not recorded root=%s: %s", roll.root, exc)

    # --- time ---------------------------------------------------------------------------------
    def advance(self, ts: int) -> None:
        """Exchange time reached `ts`: complete every bar that ended before it."""
        if ts <= self.clock:
            return
        self.clock = ts
        minute = ts - ts % MINUTE
        if minute == self._swept_minute:
            return
        self._swept_minute = minute
        now = datetime.fromtimestamp(ts / NS, UTC)
        for state in self.roots.values():
            for bar in state.minutes.close_through(ts):
                self._minute_done(state, bar)
            for bar in state.hours.close_through(now):
                self._emit(bar)
            for bar in state.days.close_through(now):
                self._emit(bar)
        hour = ts - ts % (60 * MINUTE)
        if hour != self._watermark:
            self._watermark = hour
            self.on_watermark(hour)

    def _minute_done(self, state: RootState, bar: Bar) -> None:
        start = int(bar.ts.timestamp()) * NS
        state.closed_through = max(state.closed_through, start + MINUTE)
        prev = state.last_minute
        if prev is not None and session_date_ns(int(prev.ts.timestamp()) * NS) == session_date_ns(start):
            missing = int((bar.ts - prev.ts).total_seconds() // 60) - 1
            if missing > 0:
                self.counters["gap_minutes"] += missing
        state.last_minute = bar
        self._emit(bar)
        for hour in state.hours.push(bar):
            self._emit(hour)
        for day in state.days.push(bar):
            self._emit(day)

    def _emit(self, bar: Bar) -> None:
        if self.publish(bar):
            self.counters[f"bars_{bar.timeframe}"] += 1
            if bar.timeframe == "1m":
                self.last_bar_time = bar.ts
        else:
            self.counters["duplicate_bars"] += 1

    # --- reconnect and stop -------------------------------------------------------------------
    def resume_point(self) -> int | None:
        """Where a new subscription must start: the earliest unfinished minute (None: from now)."""
        starts = [s.minutes.open_minute for s in self.roots.values() if s.minutes.open_minute is not None]
        if starts:
            return min(starts)
        ends = [s.closed_through for s in self.roots.values() if s.closed_through]
        return min(ends) if ends else None

    def forget_open_minutes(self) -> None:
        """Drop half-built minutes: the replay after a reconnect rebuilds them whole."""
        for state in self.roots.values():
            state.minutes = MinuteBarBuilder(state.root)
            state.minute_volume = Counter()
            state.minute_of_volume = -1
        self.replay_until = self.clock

    def flush_closed(self) -> None:
        """On stop: publish only bars whose time is over (never a minute still open)."""
        self.advance(self.clock + 1)


def restart_point(last_minute_ms: dict[str, int | None]) -> int | None:
    """Where a hub starting afresh subscribes (ns): the open of the CME session of the root furthest
    behind, so that session's hourly and daily bars are rebuilt whole from its trades (bars already
    published are refused by their streams as duplicates). None when nothing was published yet.
    Databento Live replays up to 24 h, one session; a longer outage is the bar store's warmup's job."""
    known = [ms for ms in last_minute_ms.values() if ms is not None]
    if not known:
        return None
    behind = datetime.fromtimestamp(min(known) / 1000, UTC)
    return int(session_open(session_date(behind)).timestamp()) * NS


def run_live(hub: Hub, *, key: str, dataset: str, roots: list[str], gateway: str | None, port: int | None,
             stopping, heartbeat=lambda hub: None, heartbeat_every: float = 5.0, schema: str = "trades",
             max_backoff: float = 30.0, first_start: int | None = None) -> None:
    """Subscribe through the official client, feed the hub, reconnect with backfill until `stopping()`.
    `first_start`: the first subscription's `start=` (a restarted hub's `restart_point`)."""
    import databento as db

    backoff = 0.5
    last_beat = 0.0
    while not stopping():
        records: queue.Queue = queue.Queue(maxsize=200_000)
        kwargs = {"key": key, "heartbeat_interval_s": 5}
        if gateway:
            kwargs.update(gateway=gateway, port=port)
        start = hub.resume_point() if hub.counters["connections"] else first_start
        try:
            client = db.Live(**kwargs)
            client.add_callback(records.put)
            client.subscribe(dataset=dataset, schema=schema, stype_in="parent", symbols=[f"{r}.FUT" for r in roots],
                             start=start)
            client.start()
        except Exception as exc:  # noqa: BLE001 — auth refused, gateway down: log, back off, retry
            hub.counters["connect_failures"] += 1
            log.error("databento connect failed (%s: %s); retrying in %.1fs", exc.__class__.__name__, exc, backoff)
            time.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)
            continue
        hub.counters["connections"] += 1
        log.info("databento session started roots=%s start=%s", ",".join(roots), start)
        backoff = 0.5
        while True:
            try:
                hub.process(records.get(timeout=0.25))
                while True:
                    hub.process(records.get_nowait())
            except queue.Empty:
                hub.flush()  # the queue is drained: what is built goes out now
            if time.monotonic() - last_beat >= heartbeat_every:
                heartbeat(hub)
                last_beat = time.monotonic()
            if stopping():
                client.stop()
                break
            if not client.is_connected() and records.empty():
                hub.counters["disconnects"] += 1
                log.warning("databento connection lost; reconnecting from the earliest unfinished minute")
                hub.forget_open_minutes()
                time.sleep(backoff)
                break
    while not records.empty():
        hub.process(records.get_nowait())
    hub.flush_closed()
    hub.flush()
    heartbeat(hub)

"""The market-data hub: Databento Live trades → front-month 1-minute, hourly and daily bars → Redis.

Spreads (by their definition) and back months never enter a bar; a root's first front is chosen
from the contracts' definitions (trading.marketdata.roll); a minute without trades makes no bar (the gap
is counted); a contract a position is still open in after its roll keeps its own bars, published under
its own streams (`hold`, strategies.bars.HeldBar); a bar is published only once time has passed its
end (trade or heartbeat time), so nothing downstream ever sees a bar twice or a bar still forming.
After a dropped connection it resubscribes with `start=` at the earliest unfinished minute and skips what it already built.

Two ways in, one result: `process(rec)` takes one record; `process_many(records)` (the batch path,
trading.marketdata.hubbatch) takes what the client delivered since the last call and builds the same
bars, counters and rolls with numpy. tests/marketdata/test_hub_batch.py holds the two together.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import databento_dbn as dbn

from strategies.bars import Bar, BarError, DailyAggregator, HeldBar, HourlyAggregator, MinuteBarBuilder
from strategies.calendar import session_date, session_date_ns, session_end
from trading.marketdata.definitions import ContractDef, Directory
from trading.marketdata.hubbatch import LAST_TIME, BatchPath
from trading.marketdata.roll import FrontMonth, Roll

log = logging.getLogger(__name__)
UTC = timezone.utc
NS = 1_000_000_000
MINUTE = 60 * NS
UNDEF_PRICE = dbn.UNDEF_PRICE


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
    last_minute_ns: int = 0  # start of last_minute
    last_day: date | None = None  # its session date
    held: dict = field(default_factory=dict)  # contract → HeldContract: no longer the front, a position open in it


@dataclass
class HeldContract:
    """A contract a position is still open in after its roll: its own 1-minute and hourly bars go on being
    built and published (as HeldBar, under the contract's own streams), so the position is managed on its
    own prices until it is closed."""
    minutes: MinuteBarBuilder
    hours: HourlyAggregator = field(default_factory=HourlyAggregator)
    closed_through: int = 0  # ns: every trade before this is in a published minute
    kept_until: int = 0  # ns: a contract just rolled from is held to the end of the roll's session anyway


class Hub(BatchPath):
    def __init__(self, fronts: dict[str, FrontMonth], *, publish, on_roll=None, on_watermark=None, flush=None,
                 on_definition=None):
        self.roots = {root: RootState(root, front, MinuteBarBuilder(root)) for root, front in fronts.items()}
        self.publish = publish  # callable(Bar): written now or buffered; a duplicate comes back by `duplicate`
        self.flush = flush or (lambda: None)  # a buffering publisher writes what it holds
        self.on_roll = on_roll or (lambda roll: None)
        self.on_definition = on_definition or (lambda contract: None)  # an outright of a configured root
        # Called with the hour (ns) before which every hourly bar of every root is published.
        self.on_watermark = on_watermark or (lambda hour_ns: None)
        self.instruments = Directory()
        self._routes: dict[int, tuple[str, RootState | None, str]] = {}  # instrument_id → (raw, state, why not)
        self._ids = BatchPath.no_ids()  # instrument ids seen by the batch path, sorted
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
            self.instruments.map(rec)
            self._routes.pop(rec.instrument_id, None)
        elif isinstance(rec, dbn.InstrumentDefMsg):
            self._definition(ContractDef.from_record(rec))
        elif isinstance(rec, dbn.SystemMsg):
            if rec.is_heartbeat():  # only a heartbeat's time is the market's: acknowledgements are not
                self.counters["system"] += 1
                self.advance(rec.ts_event)
            else:
                code = getattr(rec.code, "name", str(rec.code)).lower()
                self.counters[f"system_{code}"] += 1
                log.info("gateway says code=%s msg=%s", code, rec.msg)
        elif isinstance(rec, dbn.ErrorMsg):
            self.counters["gateway_errors"] += 1
            log.error("gateway error code=%s: %s", getattr(rec.code, "name", rec.code), rec.err)
        else:
            self.counters["other_records"] += 1

    def _route(self, instrument_id: int) -> tuple[str, RootState | None, str] | None:
        """Where an instrument's trades go, worked out once per mapping or definition (None: unmapped)."""
        known = self.instruments.describe(instrument_id)
        if known is None:
            return None
        raw, root, kind = known
        if kind == "spread":
            route = (raw, None, "spread")
        else:
            state = self.roots.get(root)
            route = (raw, state, "" if state else "unknown")
        self._routes[instrument_id] = route
        return route

    def _definition(self, contract: ContractDef) -> None:
        self.counters["definitions"] += 1
        self.instruments.define(contract)
        self._routes.pop(contract.instrument_id, None)
        state = self.roots.get(contract.root)
        if state is not None and contract.outright:
            state.front.define(contract)
            self.on_definition(contract)

    def _trade(self, rec) -> None:
        ts = rec.ts_event
        route = self._routes.get(rec.instrument_id) or self._route(rec.instrument_id)
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
        if ts > LAST_TIME:  # UNDEF_TIMESTAMP or garbage: it would move the clock centuries ahead
            self._bad("bad_time", f"symbol={raw} ts={ts} is not a time")
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
            roll = front.choose(session_date_ns(ts))
            if roll is None:  # no definition and no data yet: the session's busiest outright, at its close
                self._bad("no_front", f"root={state.root} symbol={raw}: no contract known to choose a front from")
                return
            self._rolled(roll)
        if raw != front.active:
            held = state.held.get(raw)
            if held is None:
                self.counters["back_month_dropped"] += 1
            else:
                self._held_trade(held, ts, price / 1e9, size, raw)
            return
        open_minute = state.minutes.open_minute
        if open_minute is not None and ts < open_minute:  # late, behind a minute built since
            self._bad("out_of_order", f"symbol={raw} ts={ts} is before the open minute {open_minute}")
            return
        self.counters["trades"] += 1
        bars = state.minutes.push(ts, price / 1e9, size, raw)
        for bar in bars:
            self._minute_done(state, bar)

    def _held_trade(self, held: HeldContract, ts: int, price: float, size: int, raw: str) -> None:
        if ts < held.closed_through:
            self.counters["replay_skipped" if ts <= self.replay_until else "out_of_order"] += 1
            return
        try:
            bars = held.minutes.push(ts, price, size, raw)
        except BarError:  # behind a minute built since
            self._bad("out_of_order", f"symbol={raw} ts={ts} is before the open minute {held.minutes.open_minute}")
            return
        self.counters["held_trades"] += 1
        for bar in bars:
            self._held_minute(held, bar)

    def _held_minute(self, held: HeldContract, bar: Bar) -> None:
        start = int(bar.ts.timestamp()) * NS
        held.closed_through = max(held.closed_through, start + MINUTE)
        self._emit(HeldBar.of(bar))
        for hour in held.hours.push(bar, start):
            self._emit(HeldBar.of(hour))

    def hold(self, contracts: dict[str, set[str]]) -> None:
        """The contracts (root → raw symbols) positions are open in: each one that is not its root's front
        has its bars published; one no longer held stops (its open minute and hour are dropped), but not
        before the end of the session it was rolled from in."""
        for root, state in self.roots.items():
            wanted = set(contracts.get(root, ()))
            for raw in set(state.held) - wanted:
                if self.clock < state.held[raw].kept_until:
                    continue
                del state.held[raw]
                log.info("held contract released root=%s contract=%s", root, raw)
            for raw in wanted - set(state.held):
                state.held[raw] = HeldContract(MinuteBarBuilder(root))
                log.info("held contract followed root=%s contract=%s", root, raw)

    @property
    def holding(self) -> bool:
        return any(state.held for state in self.roots.values())

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
        else:  # this run's first session of the root
            roll = state.front.session_opened(new_session)
            if roll:
                self._rolled(roll)
        state.session_end_ns = int(session_end(new_session).timestamp()) * NS

    def _rolled(self, roll: Roll) -> None:
        self.counters["rolls"] += 1
        log.info("contract roll root=%s from=%s to=%s session=%s reason=%s", roll.root, roll.from_contract,
                 roll.to_contract, roll.session_date, roll.reason)
        if roll.from_contract:  # a position may be open in it that the books do not show yet (a worker
            # behind the hub, the database away): its bars go on for the roll's whole session
            held = self.roots[roll.root].held.setdefault(roll.from_contract, HeldContract(MinuteBarBuilder(roll.root)))
            held.kept_until = int(session_end(roll.session_date).timestamp()) * NS
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
        for state in self.roots.values():
            if ts >= state.minutes.due_ns:
                for bar in state.minutes.close_through(ts):
                    self._minute_done(state, bar)
            if ts >= state.hours.due_ns:
                for bar in state.hours.close_through(ts):
                    self._emit(bar)
            if ts >= state.days.due_ns:
                for bar in state.days.close_through(ts):
                    self._emit(bar)
            for held in state.held.values():
                for bar in held.minutes.close_through(ts):
                    self._held_minute(held, bar)
                for bar in held.hours.close_through(ts):
                    self._emit(HeldBar.of(bar))
        hour = ts - ts % (60 * MINUTE)
        if hour != self._watermark:
            self._watermark = hour
            self.on_watermark(hour)

    def _minute_done(self, state: RootState, bar: Bar) -> None:
        start = int(bar.ts.timestamp()) * NS
        if start + MINUTE > state.closed_through:
            state.closed_through = start + MINUTE
        day = session_date_ns(start)
        if state.last_minute is not None and state.last_day == day:
            missing = (start - state.last_minute_ns) // MINUTE - 1
            if missing > 0:
                self.counters["gap_minutes"] += missing
        state.last_minute, state.last_minute_ns, state.last_day = bar, start, day
        self._emit(bar)
        for hour in state.hours.push(bar, start):
            self._emit(hour)
        for session in state.days.push(bar, start, day):
            self._emit(session)

    def _emit(self, bar: Bar) -> None:
        self.publish(bar)
        self.counters[f"bars_{bar.timeframe}"] += 1
        if bar.timeframe == "1m":
            self.last_bar_time = bar.ts

    def duplicate(self, bar: Bar) -> None:
        """The writer found `bar` already in its stream (a replay after a reconnect): counted as a
        duplicate, not as a bar of this run."""
        self.counters["duplicate_bars"] += 1
        self.counters[f"bars_{bar.timeframe}"] -= 1

    def last_trades(self) -> dict[str, int]:
        """Each root's newest front-month trade time (ns; 0: none yet), for feed health."""
        return {root: max(state.minutes.last_ts, state.last_minute_ns, 0) for root, state in self.roots.items()}

    # --- reconnect and stop -------------------------------------------------------------------
    def resume_point(self) -> int | None:
        """Where a new subscription must start: the earliest unfinished minute (None: from now)."""
        builders = [b for s in self.roots.values() for b in (s.minutes, *(h.minutes for h in s.held.values()))]
        starts = [b.open_minute for b in builders if b.open_minute is not None]
        if starts:
            return min(starts)
        ends = [s.closed_through for s in self.roots.values() if s.closed_through]
        return min(ends) if ends else None

    def forget_open_minutes(self) -> None:
        """Drop half-built minutes: the replay after a reconnect rebuilds them whole."""
        for state in self.roots.values():
            state.minutes = MinuteBarBuilder(state.root)
            for held in state.held.values():
                held.minutes = MinuteBarBuilder(state.root)
            state.minute_volume = Counter()
            state.minute_of_volume = -1
        self.replay_until = self.clock

    def flush_closed(self) -> None:
        """On stop: publish only bars whose time is over (never a minute still open)."""
        self.advance(self.clock + 1)

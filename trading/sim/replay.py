"""What the local Live gateway sends for a session's subscriptions, chosen as Databento's gateway
chooses it: the records of DBN files (with each file's companion definitions), per schema and
symbol, from `start=` on, merged in time order, with the system and error messages around them.

Symbols: parent (`CL.FUT`: every instrument of the product, outrights and spreads), raw symbol, or
ALL_SYMBOLS. Start: absent → live (a paced replay begins at the market's present); 0 → all that is
held; a time → from that time, except definitions, which GLBX.MDP3 replays from the start of the
week. A replay that caught up sends REPLAY_COMPLETED; a symbol that resolves to nothing gets an
error record (SYMBOL_RESOLUTION_FAILED) and the session goes on.
"""
from __future__ import annotations

import logging

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import databento_dbn as dbn

from trading.marketdata.dbnfile import read_records
from trading.marketdata.definitions import companion_path

log = logging.getLogger(__name__)

CHICAGO = ZoneInfo("America/Chicago")
SUPPORTED_SCHEMAS = {"trades", "ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "definition", "mbp-1", "tbbo",
                     "statistics", "status"}
_CONTRACT = re.compile(r"^(?P<root>[A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}(-[A-Z0-9]+?[FGHJKMNQUVXZ]\d{1,2})?$")


@dataclass(frozen=True)
class Record:
    ts: int
    instrument_id: int
    raw_symbol: str
    schema: str
    data: bytes


@dataclass
class Plan:
    """One session's output: DBN bytes (system and error messages) and records, in sending order."""
    items: list = field(default_factory=list)  # Record or bytes
    parents: dict[int, str] = field(default_factory=dict)  # instrument id → the symbol it was subscribed by
    heads: list[bytes] = field(default_factory=list)  # acknowledgements and symbol errors, sent first
    records: int = 0


def week_start(ts: int) -> int:
    """Saturday 00:00 Chicago on or before `ts` (ns): where a week's definitions begin."""
    local = datetime.fromtimestamp(ts / 1e9, timezone.utc).astimezone(CHICAGO)
    saturday = (local - timedelta(days=(local.weekday() - 5) % 7)).date()
    return int(datetime.combine(saturday, datetime.min.time(), tzinfo=CHICAGO).timestamp()) * 1_000_000_000


def system(ts: int, text: str, code) -> bytes:
    return bytes(dbn.SystemMsg(ts, text, code=code))


class ReplaySource:
    def __init__(self, files):
        paths, seen = [], set()
        for path in files:
            for p in (Path(path), companion_path(Path(path))):
                if p is not None and p.resolve() not in seen:
                    seen.add(p.resolve())
                    paths.append(p)
        self.records: list[Record] = []
        self.roots: dict[int, str] = {}  # instrument id → product
        self.symbols: dict[int, str] = {}
        for path in paths:
            reading = read_records(path)
            if reading.bad:  # replayed whole or not at all; read_records logged where and why
                log.error("gateway skips file path=%s reason=%s", path, reading.error)
                continue
            for rec in reading.records:
                if isinstance(rec, dbn.InstrumentDefMsg):
                    self.roots[rec.instrument_id] = rec.asset
                    self.symbols[rec.instrument_id] = rec.raw_symbol
                symbol = reading.symbols.get(rec.instrument_id) or self.symbols.get(rec.instrument_id, "")
                self.records.append(Record(rec.ts_event, rec.instrument_id, symbol, reading.schema, bytes(rec)))
        for rec in self.records:
            if rec.instrument_id not in self.symbols and rec.raw_symbol:
                self.symbols[rec.instrument_id] = rec.raw_symbol
        for iid, raw in self.symbols.items():
            match = _CONTRACT.match(raw)
            if iid not in self.roots and match:
                self.roots[iid] = match["root"]
        # definitions before other records of the same time: a contract is known before it trades
        self.records.sort(key=lambda r: (r.ts, r.schema != "definition"))

    def _ids(self, symbol: str, stype: str) -> set[int]:
        if symbol == "ALL_SYMBOLS":
            return set(self.symbols)
        if stype == "parent":
            root = symbol.split(".")[0]
            return {iid for iid, r in self.roots.items() if r == root}
        return {iid for iid, raw in self.symbols.items() if raw == symbol}

    def plan(self, subs: list[dict], now: int | None) -> Plan:
        """What to send for `subs`; `now`: the market's present when paced (None: replay everything)."""
        plan = Plan()
        ts0 = now if now is not None else (self.records[0].ts if self.records else 0)
        chosen: dict[int, tuple[int, int]] = {}  # record index → (subscription, replayed?)
        completes = []
        for number, sub in enumerate(subs):
            schema, stype = sub.get("schema", ""), sub.get("stype_in", "raw_symbol")
            sub_id = sub.get("id") or str(number)
            plan.heads.append(system(ts0, f"Subscription request {sub_id} for {schema} data succeeded",
                                     dbn.SystemCode.SUBSCRIPTION_ACK))
            ids: set[int] = set()
            for symbol in [s for s in sub.get("symbols", "").split(",") if s]:
                found = self._ids(symbol, stype)
                if not found:
                    plan.heads.append(bytes(dbn.ErrorMsg(ts0, f"Failed to resolve symbol: {symbol}", is_last=False,
                                                         code=dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED)))
                for iid in found:
                    ids.add(iid)
                    plan.parents.setdefault(iid, symbol)
            if "start" not in sub:  # live: from the market's present
                begin, replayed = (now if now is not None else 0), False
            else:
                begin, replayed = int(sub["start"] or 0), True
                if schema == "definition" and begin:
                    begin = week_start(begin)
            last = None
            for i, rec in enumerate(self.records):
                if rec.schema == schema and rec.ts >= begin and rec.instrument_id in ids:
                    chosen.setdefault(i, number)
                    if replayed and (now is None or rec.ts <= now):
                        last = i
            if replayed:
                completes.append((last, system(ts0, f"Finished {schema} replay", dbn.SystemCode.REPLAY_COMPLETED)))
        after: dict[int | None, list[bytes]] = {}
        for last, message in completes:
            after.setdefault(last, []).append(message)
        plan.items.extend(after.pop(None, []))
        for i in sorted(chosen):
            plan.items.append(self.records[i])
            plan.records += 1
            plan.items.extend(after.pop(i, []))
        return plan

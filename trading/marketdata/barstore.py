"""Fill and read the bar store (hourly and daily bars in the database).

Sources: the hub's own bars as it publishes them, and DBN files: a directory of them, or what
warmup downloaded from Databento's historical API (trading.marketdata.history). From files the
front month of each CME session is the one the hub would trade (trading.marketdata.roll over the
contracts' definitions), so the bar store and the hub agree bar for bar.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from strategies.bars import Bar, to_daily, to_hourly, trades_to_minutes
from strategies.calendar import session_close, session_dates
from trading.marketdata.contractstore import contract_defs, save_contracts, save_session_volumes
from trading.marketdata.dbnfile import read_records
from trading.marketdata.definitions import OUTRIGHT, ContractDef, companion_path
from trading.marketdata.roll import FrontMonth, fronts_by_session
from trading.models import Instrument, StoredBar

log = logging.getLogger(__name__)
UTC = timezone.utc
NS = 1_000_000_000
INT64_MAX = np.iinfo(np.int64).max


def store_bars(root: str, timeframe: str, frame: pd.DataFrame, source: str, contract: str = "") -> int:
    """Insert bars (ts int64 ns, open, high, low, close, volume[, trades][, contract]); existing ones stay."""
    rows = [StoredBar(root=root, timeframe=timeframe, ts=datetime.fromtimestamp(int(r.ts) / NS, UTC),
                      contract=getattr(r, "contract", contract) or contract, open=float(r.open), high=float(r.high),
                      low=float(r.low), close=float(r.close), volume=int(r.volume), trades=int(getattr(r, "trades", 0)),
                      source=source)
            for r in frame.itertuples(index=False)]
    before = StoredBar.objects.filter(root=root, timeframe=timeframe).count()
    StoredBar.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
    return StoredBar.objects.filter(root=root, timeframe=timeframe).count() - before


def store_bar(bar: Bar) -> None:
    """The hub's hourly and daily bars, as it publishes them (best effort, idempotent)."""
    if bar.timeframe in ("1h", "1d"):
        StoredBar.objects.get_or_create(root=bar.symbol, timeframe=bar.timeframe, ts=bar.ts, defaults=dict(
            contract=bar.contract, open=bar.open, high=bar.high, low=bar.low, close=bar.close, volume=bar.volume,
            trades=bar.trades, source="hub"))


def load_frame(root: str, timeframe: str = "1h", *, until: datetime | None = None, limit: int | None = None) -> pd.DataFrame:
    rows = StoredBar.objects.filter(root=root, timeframe=timeframe)
    if until is not None:
        rows = rows.filter(ts__lte=until)
    rows = rows.order_by("-ts")
    if limit is not None:
        rows = rows[:limit]
    data = list(rows.values_list("ts", "open", "high", "low", "close", "volume"))[::-1]
    return pd.DataFrame({"ts": np.array([int(r[0].timestamp()) * NS for r in data], dtype=np.int64),
                         "open": [r[1] for r in data], "high": [r[2] for r in data], "low": [r[3] for r in data],
                         "close": [r[4] for r in data], "volume": [r[5] for r in data]})


def _fronts(root: str, frame: pd.DataFrame, weight: str, contracts: list[ContractDef]) -> tuple[pd.DataFrame, dict]:
    """Keep the rows of the front contract of each CME session, as the hub picks it (its rule, from
    the contracts' definitions, starting with no front known); returns them and the volume per
    contract of the last complete session of the data."""
    instrument = Instrument.objects.filter(root=root).first()
    rule, days = (instrument.roll_rule, instrument.roll_days_before_expiry) if instrument else ("volume", 5)
    frame = frame.assign(session=session_dates(frame["ts"].to_numpy(dtype=np.int64)))
    volume: dict = {}
    for (session, contract), size in frame.groupby(["session", "contract"])[weight].sum().sort_index().items():
        volume.setdefault(pd.Timestamp(session).date(), {})[contract] = int(size)
    fronts = fronts_by_session(FrontMonth(root, rule, days, contracts=contracts), volume)
    days = np.array([np.datetime64(s, "D") for s in fronts], dtype="datetime64[D]")  # sorted, as volume's keys
    front_of_row = np.array(list(fronts.values()), dtype=object)[np.searchsorted(days, frame["session"].to_numpy())]
    keep = frame[frame["contract"].to_numpy(dtype=object) == front_of_row]
    end = int(frame["ts"].max())
    complete = [s for s in volume if int(session_close(s).timestamp()) * NS <= end] or list(volume)
    last = max(complete) if complete else None
    return keep.drop(columns="session").sort_values("ts", kind="stable").reset_index(drop=True), \
        ({"session": last, "volume": volume[last]} if last else {})


_OUTRIGHT_SYMBOL = re.compile(r"^(?P<root>[A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}$")


def _instruments(reading, definitions: dict[int, ContractDef], known: dict[str, ContractDef]) -> dict:
    """instrument id → its contract: from the definitions, else a stored contract of that raw symbol, else
    (a file that came without definitions) told by its symbol: 'CLZ6' an outright, 'CLZ6-CLF7' a spread."""
    out, guessed = {}, []
    for iid in {r.instrument_id for r in reading.records}:
        raw = reading.symbols.get(iid, "")
        contract = definitions.get(iid) or known.get(raw)
        if contract is None and raw:
            match = _OUTRIGHT_SYMBOL.match(raw)
            root = match["root"] if match else raw.split("-")[0][:-2]
            contract = ContractDef(raw, int(iid), root, OUTRIGHT if match else "S")
            guessed.append(raw)
        if contract is not None:
            out[iid] = contract
    if guessed:
        log.warning("warmup tells %d instrument(s) of %s by their symbols: no definition (e.g. %s)", len(guessed),
                    reading.path.name, guessed[0])
    missing = {r.instrument_id for r in reading.records} - set(out)
    if missing:
        log.warning("warmup skips %d instrument(s) of %s without a symbol or a definition", len(missing),
                    reading.path.name)
    return out


def bars_from_reading(reading, roots: set[str], definitions: dict[int, ContractDef],
                      known: dict[str, ContractDef] | None = None) -> dict[str, dict]:
    """{root: {'1h': frame, '1d': frame, 'volume': last session's volume}} from a trades or ohlcv
    reading, front month only (outrights told by their definitions)."""
    if reading.schema not in ("trades", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d") or not reading.records:
        log.warning("warmup skips %s: schema %s gives no bars", reading.path.name, reading.schema)
        return {}
    contracts = _instruments(reading, definitions, known or {})
    recs = [r for r in reading.records if r.instrument_id in contracts and contracts[r.instrument_id].outright
            and contracts[r.instrument_id].root in roots]
    if not recs:
        return {}
    ts = np.array([r.ts_event for r in recs], dtype=np.int64)
    names = [contracts[r.instrument_id].raw_symbol for r in recs]
    product = [contracts[r.instrument_id].root for r in recs]
    by_root: dict[str, list[ContractDef]] = {}
    for c in {**{c.instrument_id: c for c in (known or {}).values()}, **contracts}.values():
        by_root.setdefault(c.root, []).append(c)
    out: dict[str, dict] = {}
    if reading.schema == "trades":
        raw = np.array([r.price for r in recs], dtype=np.int64)
        frame = pd.DataFrame({"ts": ts, "price": raw / 1e9, "size": [r.size for r in recs], "contract": names,
                              "root": product})[(raw != INT64_MAX) & (raw > 0)]
        for root, group in frame.groupby("root"):
            front, last = _fronts(root, group, "size", by_root.get(root, []))
            minutes = trades_to_minutes(front["ts"].to_numpy(), front["price"].to_numpy(), front["size"].to_numpy())
            out[root] = {"1h": _with_contract(to_hourly(minutes), front), "1d": to_daily(minutes), "volume": last}
        return out
    prices = np.array([(r.open, r.high, r.low, r.close) for r in recs], dtype=np.int64).reshape(-1, 4)
    volume = np.array([min(r.volume, INT64_MAX) for r in recs], dtype=np.int64)
    sane = ((prices > 0) & (prices != INT64_MAX)).all(axis=1) & (volume < INT64_MAX)
    if not sane.all():
        reading.problems["bad_bar"] += int((~sane).sum())
        log.error("warmup leaves out %d ohlcv records with impossible prices or volume path=%s",
                  int((~sane).sum()), reading.path)
    frame = pd.DataFrame({"ts": ts, "open": prices[:, 0] / 1e9, "high": prices[:, 1] / 1e9, "low": prices[:, 2] / 1e9,
                          "close": prices[:, 3] / 1e9, "volume": volume, "trades": 0, "contract": names,
                          "root": product})[sane]
    for root, group in frame.groupby("root"):
        front, last = _fronts(root, group.drop(columns="root"), "volume", by_root.get(root, []))
        bars = front.reset_index(drop=True)
        if reading.schema == "ohlcv-1d":
            out[root] = {"1d": bars.drop(columns="contract")}
        elif reading.schema == "ohlcv-1h":
            out[root] = {"1h": bars, "1d": to_daily(bars.drop(columns="contract"))}
        else:
            plain = bars.drop(columns="contract")
            out[root] = {"1h": _with_contract(to_hourly(plain), bars), "1d": to_daily(plain)}
        out[root]["volume"] = last
    return out


def _with_contract(hourly: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Hourly bars with the contract they came from (the front of their session)."""
    by_hour = dict(zip(rows["ts"].to_numpy(dtype=np.int64) // (3600 * NS) * (3600 * NS), rows["contract"]))
    return hourly.assign(contract=[by_hour.get(int(t), "") for t in hourly["ts"]])


@dataclass
class WarmupReport:
    """What a set of DBN files gave: new bars, files refused (name → reason), records left out."""
    added: dict[str, int] = field(default_factory=dict)
    bad_files: dict[str, str] = field(default_factory=dict)
    bad_records: dict[str, dict[str, int]] = field(default_factory=dict)


def warm_from_paths(paths, roots: set[str], source: str = "files") -> WarmupReport:
    """Store the definitions of `paths` (and of their companion files) as contracts, and the front
    month's hourly and daily bars of their trades or ohlcv files. A bad file is reported by name and
    reason and the next one read; records with impossible values are counted and left out."""
    report = WarmupReport()
    paths = [Path(p) for p in paths]
    for path in list(paths):
        companion = companion_path(path)
        if companion is not None and companion not in paths:
            paths.append(companion)
    readings = []
    for path in sorted(set(paths)):
        reading = read_records(path)
        if reading.bad:
            report.bad_files[path.name] = reading.error
        else:
            readings.append(reading)
    definitions: dict[int, ContractDef] = {}
    for reading in readings:
        if reading.schema == "definition":
            for rec in sorted(reading.records, key=lambda r: r.ts_event):
                definitions[int(rec.instrument_id)] = ContractDef.from_record(rec)
    save_contracts(c for c in definitions.values() if c.root in roots)
    known = {c.raw_symbol: c for i in Instrument.objects.filter(root__in=roots).prefetch_related("contracts")
             for c in contract_defs(i)}
    added = report.added
    for reading in readings:
        if reading.schema == "definition":
            continue
        frames_by_root = bars_from_reading(reading, roots, definitions, known)
        if reading.problems:
            report.bad_records[reading.path.name] = dict(reading.problems)
        for root, frames in frames_by_root.items():
            last = frames.pop("volume", None)
            if last:
                save_session_volumes(root, last["session"], last["volume"])
            for timeframe, frame in frames.items():
                added[f"{root} {timeframe}"] = added.get(f"{root} {timeframe}", 0) + store_bars(root, timeframe, frame,
                                                                                                 source)
    return report


def warm_from_files(directory: Path, roots: set[str]) -> WarmupReport:
    return warm_from_paths(sorted(p for p in directory.iterdir() if p.name.endswith((".dbn", ".dbn.zst"))), roots)

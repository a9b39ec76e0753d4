"""Fill and read the bar store (hourly and daily bars in the database).

Sources: the hub's own bars as it publishes them, DBN files from a directory, or Databento's
historical API (downloads cached under RUNTIME_DIR/warmup, so a restart never re-downloads).
From files or history the front month is, per CME session, the most traded outright.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from strategies.bars import Bar, to_daily, to_hourly, trades_to_minutes
from strategies.calendar import session_dates
from trading.marketdata.dbnfile import Reading, read_records
from trading.marketdata.roll import parse_contract
from trading.models import StoredBar

log = logging.getLogger(__name__)
UTC = timezone.utc
NS = 1_000_000_000


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


def _root_of(contract: str) -> str | None:
    parsed = parse_contract(contract, datetime.now(UTC).date())
    return parsed[0] if parsed else None  # None for spreads and unknown symbols


def _front_per_session(frame: pd.DataFrame, weight: str) -> pd.DataFrame:
    """Keep, per root and CME session, only the outright that traded most (ties: the later name)."""
    frame = frame.assign(root=frame["contract"].map(_root_of)).dropna(subset=["root"])
    if frame.empty:
        return frame
    frame = frame.assign(session=session_dates(frame["ts"].to_numpy(dtype=np.int64)))
    volume = frame.groupby(["root", "session", "contract"])[weight].sum().reset_index()
    front = volume.sort_values(["root", "session", weight, "contract"]).groupby(["root", "session"]).tail(1)
    keep = frame.merge(front[["root", "session", "contract"]], on=["root", "session", "contract"])
    return keep.drop(columns="session").sort_values("ts", kind="stable").reset_index(drop=True)


INT64_MAX = np.iinfo(np.int64).max


@dataclass
class WarmupReport:
    """What a directory of DBN files gave: new bars, files refused (name → reason), records left out."""
    added: dict[str, int] = field(default_factory=dict)
    bad_files: dict[str, str] = field(default_factory=dict)
    bad_records: dict[str, dict[str, int]] = field(default_factory=dict)


def bars_from_file(path: Path, roots: set[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """{root: {'1h': frame, '1d': frame}} from a trades or ohlcv DBN file (front month only)."""
    return bars_from_reading(read_records(path), roots)


def bars_from_reading(reading: Reading, roots: set[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """Bars of a file that was read whole (a bad file gives none); records with impossible prices or
    volumes are counted in `reading.problems` and left out."""
    path = reading.path
    if reading.bad:
        return {}
    if reading.schema not in ("trades", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d") or not reading.records:
        log.warning("warmup skips %s: schema %s gives no bars", path.name, reading.schema)
        return {}
    recs = reading.records
    contracts = [reading.symbols.get(r.instrument_id, "") for r in recs]
    ts = np.array([r.ts_event for r in recs], dtype=np.int64)
    out: dict[str, dict[str, pd.DataFrame]] = {}
    if reading.schema == "trades":
        raw = np.array([r.price for r in recs], dtype=np.int64)
        frame = pd.DataFrame({"ts": ts, "price": raw / 1e9, "size": [r.size for r in recs], "contract": contracts})
        frame = _front_per_session(frame[(raw != INT64_MAX) & (raw > 0)], "size")
        for root, group in frame.groupby("root"):
            if root in roots:
                minutes = trades_to_minutes(group["ts"].to_numpy(), group["price"].to_numpy(), group["size"].to_numpy())
                out[root] = {"1h": to_hourly(minutes), "1d": to_daily(minutes)}
        return out
    prices = np.array([(r.open, r.high, r.low, r.close) for r in recs], dtype=np.int64).reshape(-1, 4)
    volume = np.array([min(r.volume, INT64_MAX) for r in recs], dtype=np.int64)
    sane = ((prices > 0) & (prices != INT64_MAX)).all(axis=1) & (volume < INT64_MAX)
    if not sane.all():
        reading.problems["bad_bar"] += int((~sane).sum())
        log.error("warmup leaves out %d ohlcv records with impossible prices or volume path=%s",
                  int((~sane).sum()), path)
    frame = pd.DataFrame({"ts": ts, "open": prices[:, 0] / 1e9, "high": prices[:, 1] / 1e9, "low": prices[:, 2] / 1e9,
                          "close": prices[:, 3] / 1e9, "volume": volume, "trades": 0, "contract": contracts})[sane]
    frame = _front_per_session(frame, "volume")
    for root, group in frame.groupby("root"):
        if root not in roots:
            continue
        bars = group.drop(columns=["contract", "root"]).reset_index(drop=True)
        if reading.schema == "ohlcv-1d":
            out[root] = {"1d": bars}
        elif reading.schema == "ohlcv-1h":
            out[root] = {"1h": bars, "1d": to_daily(bars)}
        else:
            out[root] = {"1h": to_hourly(bars), "1d": to_daily(bars)}
    return out


def warm_from_files(directory: Path, roots: set[str]) -> WarmupReport:
    """Every DBN file of `directory` into the bar store; a bad file is reported and the next one read."""
    report = WarmupReport()
    for path in sorted(p for p in directory.iterdir() if p.name.endswith((".dbn", ".dbn.zst"))):
        reading = read_records(path)
        if reading.bad:
            report.bad_files[path.name] = reading.error
            continue
        frames_by_root = bars_from_reading(reading, roots)
        if reading.problems:
            report.bad_records[path.name] = dict(reading.problems)
        for root, frames in frames_by_root.items():
            for timeframe, frame in frames.items():
                name = f"{root} {timeframe}"
                report.added[name] = report.added.get(name, 0) + store_bars(root, timeframe, frame, "files")
    return report


def download_history(key: str, roots: list[str], start: datetime, end: datetime, cache: Path) -> list[Path]:
    """Fetch ohlcv-1h through databento.Historical into `cache` (a file per root and range, reused)."""
    import databento as db

    cache.mkdir(parents=True, exist_ok=True)
    client, paths = None, []
    for root in roots:
        path = cache / f"{root}.ohlcv-1h.{start:%Y%m%d}-{end:%Y%m%d}.dbn.zst"
        if not path.exists():
            client = client or db.Historical(key)
            data = client.timeseries.get_range(dataset="GLBX.MDP3", schema="ohlcv-1h", symbols=[f"{root}.FUT"],
                                               stype_in="parent", start=start, end=end)
            tmp = path.with_suffix(".part")
            data.to_file(tmp)
            tmp.replace(path)
            log.info("warmup downloaded root=%s path=%s", root, path.name)
        paths.append(path)
    return paths

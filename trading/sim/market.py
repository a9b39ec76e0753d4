"""Deterministic synthetic CME market: DBN `trades` files for the demo and the tests.

Per root: three listed months (front carries most volume), calendar-spread trades (`CLZ6-CLF7`),
a volume roll from the front to the next month inside the span, no trading in the daily
16:00–17:00 Chicago halt, over the weekend or on a holiday, and real CME time (DST included).
Same seed → same bytes. Records are built with numpy in DBN's own layout and read back by the
official decoder in the tests. CLI: `python -m trading.sim.market --help`.
"""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import databento_dbn as dbn
import numpy as np
import pandas as pd

from strategies.instruments import CONTRACT_SPECS, MONTH_CODES
from strategies.synthetic import LEVELS

CHICAGO = ZoneInfo("America/Chicago")
PUBLISHER_GLBX = 1  # GLBX.MDP3
F_LAST = 0x80

# DBN v3 trade (MBP-0) record: 48 bytes.
TRADE_DTYPE = np.dtype([
    ("length", "u1"), ("rtype", "u1"), ("publisher_id", "<u2"), ("instrument_id", "<u4"), ("ts_event", "<u8"),
    ("price", "<i8"), ("size", "<u4"), ("action", "S1"), ("side", "S1"), ("flags", "u1"), ("depth", "u1"),
    ("ts_recv", "<u8"), ("ts_in_delta", "<i4"), ("sequence", "<u4"),
])
assert TRADE_DTYPE.itemsize == 48


@dataclass(frozen=True)
class Listing:
    raw_symbol: str
    instrument_id: int
    kind: str  # 'front', 'next', 'far', 'spread'


def contract_symbol(root: str, year: int, month: int) -> str:
    return f"{root}{MONTH_CODES[month - 1]}{year % 10}"


def first_listed_month(start: date) -> date:
    """The front month of a span generated from `start`: the calendar month after it."""
    return (start.replace(day=1) + timedelta(days=32)).replace(day=1)


def listings(root: str, first_month: date) -> list[Listing]:
    months = []
    y, m = first_month.year, first_month.month
    for _ in range(3):
        months.append(contract_symbol(root, y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    spread = f"{months[0]}-{months[1]}"
    out = []
    for kind, sym in zip(("front", "next", "far", "spread"), months + [spread]):
        iid = int.from_bytes(hashlib.sha256(sym.encode()).digest()[:3], "big") + 1000
        out.append(Listing(sym, iid, kind))
    return out


def trading_minutes(start: date, days: int, holidays: set[date]) -> np.ndarray:
    """Minute starts (int64 ns UTC) when the market trades: not the halt, weekend or a holiday."""
    begin = datetime.combine(start, datetime.min.time(), tzinfo=CHICAGO) - timedelta(hours=7)  # 17:00 the day before
    grid = pd.date_range(begin, begin + timedelta(days=days), freq="min", inclusive="left").tz_convert("UTC")
    local = grid.tz_convert(CHICAGO)
    hour, dow = local.hour.to_numpy(), local.day_of_week.to_numpy()
    trade_day = (local + pd.Timedelta(hours=7)).normalize().date  # 17:00 local belongs to the next day
    closed = (hour == 16) | (dow == 5) | ((dow == 4) & (hour >= 16)) | ((dow == 6) & (hour < 17))
    closed |= np.isin(np.array(trade_day, dtype="datetime64[D]"), np.array(sorted(holidays), dtype="datetime64[D]"))
    return grid[~closed].as_unit("ns").asi8


def _volume_profile(minutes: np.ndarray) -> np.ndarray:
    hour = pd.DatetimeIndex(minutes.view("datetime64[ns]"), tz="UTC").tz_convert(CHICAGO).hour.to_numpy()
    return 0.4 + 1.6 * np.exp(-((hour - 9.0) ** 2) / 6.0)  # busiest around the US open


def generate_root(root: str, start: date, days: int, *, seed: int, roll_day: int, trades_per_minute: float,
                  holidays: set[date], gap_rate: float = 0.03) -> tuple[np.ndarray, list[Listing]]:
    spec = CONTRACT_SPECS[root]
    tick = float(spec.tick_size)
    rng = np.random.default_rng([seed, sum(map(ord, root))])
    first_month = first_listed_month(start)
    lst = listings(root, first_month)
    minutes = trading_minutes(start, days, holidays)
    n = len(minutes)
    # One price path per minute for the front month; the others sit at a small contango.
    level = LEVELS[root]
    path = level * np.exp(np.cumsum(rng.standard_normal(n) * 0.0006))
    roll_ns = int(pd.Timestamp(start + timedelta(days=roll_day), tz=CHICAGO).tz_convert("UTC").value)
    after_roll = minutes >= roll_ns
    profile = _volume_profile(minutes)
    chunks = []
    for lst_item in lst:
        if lst_item.kind == "front":
            share = np.where(after_roll, 0.15, 0.85)
            offset = 0.0
        elif lst_item.kind == "next":
            share = np.where(after_roll, 0.85, 0.15)
            offset = level * 0.002
        elif lst_item.kind == "far":
            share = np.full(n, 0.05)
            offset = level * 0.004
        else:
            share = np.full(n, 0.05)
            offset = None
        counts = rng.poisson(trades_per_minute * profile * share)
        if lst_item.kind in ("front", "next"):
            counts[rng.random(n) < gap_rate] = 0  # quiet minutes: no trade, no bar
        total = int(counts.sum())
        if total == 0:
            continue
        minute_of = np.repeat(np.arange(n), counts)
        ts = np.sort(minutes[minute_of] + rng.integers(0, 60_000_000_000, total))  # each inside its minute
        base = path[minute_of]
        noise = rng.standard_normal(total) * level * 0.0003
        if offset is None:
            price = np.round((-level * 0.002 + rng.standard_normal(total) * level * 0.0002) / tick) * tick
        else:
            price = np.maximum(np.round((base + offset + noise) / tick) * tick, tick)
        rec = np.zeros(total, dtype=TRADE_DTYPE)
        rec["length"], rec["rtype"], rec["publisher_id"] = 12, 0x00, PUBLISHER_GLBX
        rec["instrument_id"] = lst_item.instrument_id
        rec["ts_event"] = ts
        rec["price"] = np.round(price * 1e9).astype(np.int64)
        rec["size"] = rng.integers(1, 12, total)
        rec["action"] = b"T"
        rec["side"] = np.where(rng.random(total) < 0.5, b"A", b"B")
        rec["flags"] = F_LAST
        rec["ts_recv"] = ts + rng.integers(10_000, 200_000, total)
        chunks.append(rec)
    records = np.concatenate(chunks)
    records = records[np.argsort(records["ts_event"], kind="stable")]
    records["sequence"] = np.arange(1, len(records) + 1)
    return records, lst


def metadata(root: str, lst: list[Listing], start_ns: int, end_ns: int, start: date, end: date) -> bytes:
    maps = [SimpleNamespace(raw_symbol=x.raw_symbol,
                            intervals=[SimpleNamespace(start_date=start, end_date=end, symbol=str(x.instrument_id))])
            for x in lst]
    meta = dbn.Metadata(dataset="GLBX.MDP3", start=start_ns, end=end_ns, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.TRADES,
                        symbols=[x.raw_symbol for x in lst], mappings=maps)
    return bytes(meta.encode())


def cme_holidays(start: date, days: int) -> set[date]:
    """Weekdays in the span without a CME trade date (e.g. Thanksgiving)."""
    from strategies.calendar import is_trade_date

    return {start + timedelta(days=i) for i in range(days + 1)
            if (start + timedelta(days=i)).weekday() < 5 and not is_trade_date(start + timedelta(days=i))}


def generate(out_dir: Path, *, roots: list[str], start: date, days: int, seed: int = 7, roll_day: int | None = None,
             trades_per_minute: float = 4.0, holidays: set[date] | None = None) -> dict[str, Path]:
    """Write `{ROOT}.trades.dbn` per root; returns the paths. `start` is a trade date (Chicago)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    holidays = cme_holidays(start, days) if holidays is None else holidays
    roll_day = days // 2 if roll_day is None else roll_day
    paths = {}
    for root in roots:
        records, lst = generate_root(root, start, days, seed=seed, roll_day=roll_day,
                                     trades_per_minute=trades_per_minute, holidays=holidays)
        first, last = int(records["ts_event"][0]), int(records["ts_event"][-1])
        path = out_dir / f"{root}.trades.dbn"
        with path.open("wb") as f:
            f.write(metadata(root, lst, first, last + 1, start - timedelta(days=1), start + timedelta(days=days + 1)))
            f.write(records.tobytes())
        paths[root] = path
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading.sim.market", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 10, 26))
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--roots", default=",".join(sorted(CONTRACT_SPECS)))
    parser.add_argument("--trades-per-minute", type=float, default=4.0)
    args = parser.parse_args(argv)
    paths = generate(args.out, roots=[r.strip().upper() for r in args.roots.split(",")], start=args.start,
                     days=args.days, seed=args.seed, trades_per_minute=args.trades_per_minute)
    for root, path in paths.items():
        print(f"{root}: {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

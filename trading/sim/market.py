"""Deterministic synthetic CME market: DBN `trades` and `definition` files for the demo and the tests.

Per root, contracts are listed and expire as the real product's (strategies.contracts: its months,
its last-trade rule), three at a time; a contract is listed when the one three places ahead expires
and trades until its expiration. Most volume sits in one contract (the lead), which hands over to
the next VOLUME_ROLL_DAYS CME business days before its last trade date; calendar spreads
(`CLZ6-CLF7`) trade between the lead and the next. No trading in the daily 16:00–17:00 Chicago
halt or over the weekend; a holiday closes all day (Good Friday, Christmas, New Year's Day) or has
the abbreviated session CME runs (from the evening before until 12:00 Chicago, folded into the next
trade date); real CME time, DST included. Definitions: every listed contract and spread each
Sunday before the week opens, and each new listing when it is listed. Same seed → same bytes.
CLI: `python -m trading.sim.market --help`.
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

from strategies.calendar import next_trade_date, session_dates, trade_date_offset
from strategies.contracts import contract_months, contract_symbol, expiration, last_trade_date
from strategies.instruments import CONTRACT_SPECS
from strategies.synthetic import LEVELS

CHICAGO = ZoneInfo("America/Chicago")
PUBLISHER_GLBX = 1  # GLBX.MDP3
F_LAST = 0x80
NS = 1_000_000_000
LISTED = 3  # outrights listed at a time
VOLUME_ROLL_DAYS = 6  # the lead hands its volume to the next contract this many business days before its last trade
HOLIDAY_CLOSE_HOUR = 12  # Chicago: an abbreviated holiday session ends at noon
EXCHANGES = {"CL": "XNYM", "GC": "XCEC", "SI": "XCEC", "HG": "XCEC", "YM": "XCBT"}

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
    kind: str  # 'outright' or 'spread'
    activation_ns: int
    expiration_ns: int
    year: int = 0
    month: int = 0


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * NS


def instrument_id(symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:3], "big") + 1000


def outrights(root: str, start: date, end: date) -> list[Listing]:
    """The outrights of `root` that trade between `start` and `end`, nearest expiration first."""
    months = contract_months(root, start - timedelta(days=800), 1)
    while last_trade_date(root, *months[-1]) <= end + timedelta(days=400):
        months = contract_months(root, start - timedelta(days=800), len(months) + 12)
    out = []
    for k in range(LISTED, len(months)):
        year, month = months[k]
        listed, expires = _ns(expiration(root, *months[k - LISTED])), _ns(expiration(root, year, month))
        if last_trade_date(root, year, month) >= start and listed < _ns(datetime.combine(end, datetime.min.time(),
                                                                                          tzinfo=timezone.utc)):
            symbol = contract_symbol(root, year, month)
            out.append(Listing(symbol, instrument_id(symbol), "outright", listed, expires, year, month))
    return out


def lead_until(contract: Listing, root: str) -> date:
    """The first trade date on which `contract` no longer carries the most volume."""
    return trade_date_offset(last_trade_date(root, contract.year, contract.month), -VOLUME_ROLL_DAYS)


def front_month(root: str, day: date) -> str:
    """The contract the generated market trades most on trade date `day` (the next one if `day` is
    not a trade date): what a test configures as a root's active contract for a span."""
    session = next_trade_date(day)
    for contract in outrights(root, session, session + timedelta(days=7)):
        if session < lead_until(contract, root):
            return contract.raw_symbol
    raise ValueError(f"{root}: no contract leads on {session}")


def full_closure(day: date) -> bool:
    """A holiday without any Globex session: Good Friday, Christmas and New Year's Day (observed)."""
    return (day.month == 12 and day.day >= 24) or (day.month == 1 and day.day <= 2) or \
        (day.weekday() == 4 and day.month in (3, 4))


def trading_minutes(start: date, days: int, holidays: set[date]) -> np.ndarray:
    """Minute starts (int64 ns UTC) when the market trades: not the halt, the weekend, a holiday's
    closure, or the afternoon of an abbreviated holiday session."""
    begin = datetime.combine(start, datetime.min.time(), tzinfo=CHICAGO) - timedelta(hours=7)  # 17:00 the day before
    grid = pd.date_range(begin, begin + timedelta(days=days), freq="min", inclusive="left").tz_convert("UTC")
    local = grid.tz_convert(CHICAGO)
    hour, dow = local.hour.to_numpy(), local.day_of_week.to_numpy()
    trade_day = np.array((local + pd.Timedelta(hours=7)).normalize().date, dtype="datetime64[D]")
    today = np.array(local.normalize().date, dtype="datetime64[D]")
    closed = (hour == 16) | (dow == 5) | ((dow == 4) & (hour >= 16)) | ((dow == 6) & (hour < 17))
    full = np.array(sorted(d for d in holidays if full_closure(d)), dtype="datetime64[D]")
    short = np.array(sorted(d for d in holidays if not full_closure(d)), dtype="datetime64[D]")
    closed |= np.isin(trade_day, full) | (np.isin(today, short) & (hour >= HOLIDAY_CLOSE_HOUR) & (hour < 17))
    return grid[~closed].as_unit("ns").asi8


def _volume_profile(minutes: np.ndarray) -> np.ndarray:
    hour = pd.DatetimeIndex(minutes.view("datetime64[ns]"), tz="UTC").tz_convert(CHICAGO).hour.to_numpy()
    return 0.4 + 1.6 * np.exp(-((hour - 9.0) ** 2) / 6.0)  # busiest around the US open


def _trade_records(listing: Listing, minutes: np.ndarray, counts: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Records for `counts` trades per minute (prices left to the caller) and each one's minute."""
    total = int(counts.sum())
    minute_of = np.repeat(np.arange(len(minutes)), counts)
    ts = minutes[minute_of] + rng.integers(0, 60 * NS, total)  # each inside its minute
    order = np.argsort(ts, kind="stable")
    ts, minute_of = ts[order], minute_of[order]
    rec = np.zeros(total, dtype=TRADE_DTYPE)
    rec["length"], rec["rtype"], rec["publisher_id"] = 12, 0x00, PUBLISHER_GLBX
    rec["instrument_id"] = listing.instrument_id
    rec["ts_event"] = ts
    rec["size"] = rng.integers(1, 12, total)
    rec["action"] = b"T"
    rec["side"] = np.where(rng.random(total) < 0.5, b"A", b"B")
    rec["flags"] = F_LAST
    rec["ts_recv"] = ts + rng.integers(10_000, 200_000, total)
    return rec, minute_of


def generate_root(root: str, start: date, days: int, *, seed: int, roll_day: int | None, trades_per_minute: float,
                  holidays: set[date], gap_rate: float = 0.03) -> tuple[np.ndarray, list[Listing]]:
    """Trade records of one root (sorted) and its listings (outrights, then spreads)."""
    tick = float(CONTRACT_SPECS[root].tick_size)
    rng = np.random.default_rng([seed, sum(map(ord, root))])
    minutes = trading_minutes(start, days, holidays)
    n = len(minutes)
    contracts = outrights(root, start, start + timedelta(days=days))
    sessions = session_dates(minutes)
    ends = np.array([lead_until(c, root) for c in contracts], dtype="datetime64[D]")
    lead = np.searchsorted(ends, sessions, side="right")  # index of the contract leading each minute
    if roll_day is not None:  # a test's choice: the first lead hands over on that day
        cut = int(pd.Timestamp(start + timedelta(days=roll_day), tz=CHICAGO).tz_convert("UTC").value)
        lead[(minutes >= cut) & (lead == lead[0])] += 1
    level = LEVELS[root]
    path = level * np.exp(np.cumsum(rng.standard_normal(n) * 0.0006))
    profile = _volume_profile(minutes)
    chunks, listings = [], list(contracts)
    for k, contract in enumerate(contracts):
        alive = (minutes >= contract.activation_ns) & (minutes < contract.expiration_ns)
        distance = np.abs(k - lead)
        share = np.where(distance == 0, 0.80, np.where(distance == 1, 0.12, 0.03)) * alive
        counts = rng.poisson(trades_per_minute * profile * share)
        counts[(distance <= 1) & (rng.random(n) < gap_rate)] = 0  # quiet minutes: no trade, no bar
        if not counts.any():
            continue
        rec, minute_of = _trade_records(contract, minutes, counts, rng)
        price = path[minute_of] + level * 0.002 * (k - lead[0]) + rng.standard_normal(len(rec)) * level * 0.0003
        rec["price"] = np.round(np.maximum(np.round(price / tick) * tick, tick) * 1e9)
        chunks.append(rec)
    for k in range(len(contracts) - 1):
        near, far = contracts[k], contracts[k + 1]
        symbol = f"{near.raw_symbol}-{far.raw_symbol}"
        spread = Listing(symbol, instrument_id(symbol), "spread", far.activation_ns, near.expiration_ns)
        counts = rng.poisson(trades_per_minute * profile * 0.05 * ((lead == k) & (minutes >= spread.activation_ns)
                                                                   & (minutes < spread.expiration_ns)))
        if not counts.any():
            continue
        listings.append(spread)
        rec, _ = _trade_records(spread, minutes, counts, rng)
        rec["price"] = np.round(np.round((-level * 0.002 + rng.standard_normal(len(rec)) * level * 0.0002) / tick)
                                * tick * 1e9)
        chunks.append(rec)
    records = np.concatenate(chunks)
    records = records[np.argsort(records["ts_event"], kind="stable")]
    records["sequence"] = np.arange(1, len(records) + 1)
    return records, listings


def definition_records(root: str, listings: list[Listing], start: date, days: int) -> list:
    """Definitions of every listing each Sunday 11:05 Chicago before a week's open, and of each new
    listing when it is listed (a second before its first possible trade)."""
    spec = CONTRACT_SPECS[root]
    first = start - timedelta(days=start.weekday() + 1)  # the Sunday on or before the span's first evening
    sundays = [first + timedelta(days=7 * i) for i in range(days // 7 + 2)]
    stamps = [_ns(datetime.combine(d, datetime.min.time(), tzinfo=CHICAGO) + timedelta(hours=11, minutes=5))
              for d in sundays]
    out = []
    for listing in listings:
        times = [t for t in stamps if listing.activation_ns <= t < listing.expiration_ns]
        if listing.activation_ns > stamps[0] and listing.activation_ns < stamps[-1]:
            times.append(listing.activation_ns - NS)
        for ts in sorted(times):
            out.append(dbn.InstrumentDefMsg(
                PUBLISHER_GLBX, listing.instrument_id, ts, ts, int(spec.tick_size * NS), NS, listing.raw_symbol, root,
                "FUT", dbn.InstrumentClass.FUTURE if listing.kind == "outright" else dbn.InstrumentClass.FUTURE_SPREAD,
                dbn.SecurityUpdateAction.ADD, expiration=listing.expiration_ns, activation=listing.activation_ns,
                unit_of_measure_qty=int(spec.point_value * NS), currency="USD", group=root,
                exchange=EXCHANGES.get(root, "XCME"), maturity_year=listing.year or None,
                maturity_month=listing.month or None))
    return sorted(out, key=lambda r: r.ts_event)


def metadata(root: str, lst: list[Listing], start_ns: int, end_ns: int, start: date, end: date,
             schema=dbn.Schema.TRADES) -> bytes:
    maps = [SimpleNamespace(raw_symbol=x.raw_symbol,
                            intervals=[SimpleNamespace(start_date=start, end_date=end, symbol=str(x.instrument_id))])
            for x in lst]
    meta = dbn.Metadata(dataset="GLBX.MDP3", start=start_ns, end=end_ns, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=schema,
                        symbols=[x.raw_symbol for x in lst], mappings=maps)
    return bytes(meta.encode())


def cme_holidays(start: date, days: int) -> set[date]:
    """Weekdays in the span without a CME trade date (e.g. Thanksgiving)."""
    from strategies.calendar import is_trade_date

    return {start + timedelta(days=i) for i in range(-1, days + 1)
            if (start + timedelta(days=i)).weekday() < 5 and not is_trade_date(start + timedelta(days=i))}


def generate(out_dir: Path, *, roots: list[str], start: date, days: int, seed: int = 7, roll_day: int | None = None,
             trades_per_minute: float = 4.0, holidays: set[date] | None = None) -> dict[str, Path]:
    """Write `{ROOT}.trades.dbn` and `{ROOT}.definition.dbn` per root; returns the trades files (the
    definitions are their companions, read beside them). `start` is a trade date (Chicago);
    `roll_day`: the day of the span on which the first lead hands its volume over (None: the
    products' own schedule)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    holidays = cme_holidays(start, days) if holidays is None else holidays
    first_day, last_day = start - timedelta(days=8), start + timedelta(days=days + 1)
    paths = {}
    for root in roots:
        records, lst = generate_root(root, start, days, seed=seed, roll_day=roll_day,
                                     trades_per_minute=trades_per_minute, holidays=holidays)
        first, last = int(records["ts_event"][0]), int(records["ts_event"][-1])
        path = out_dir / f"{root}.trades.dbn"
        with path.open("wb") as f:
            f.write(metadata(root, lst, first, last + 1, first_day, last_day))
            f.write(records.tobytes())
        defs = definition_records(root, lst, start, days)
        with (out_dir / f"{root}.definition.dbn").open("wb") as f:
            f.write(metadata(root, lst, defs[0].ts_event, last + 1, first_day, last_day, dbn.Schema.DEFINITION))
            f.write(b"".join(bytes(d) for d in defs))
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
        print(f"{root}: {path} ({path.stat().st_size:,} bytes) and its definitions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

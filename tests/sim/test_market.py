"""The generated market lists, trades and expires each product's contracts as CME does, and trades
holiday sessions as Globex does."""
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from strategies.calendar import session_dates
from strategies.contracts import LISTING_RULES, expiration
from strategies.instruments import CONTRACT_SPECS, MONTH_CODES
from trading.marketdata.dbnfile import read_records
from trading.sim.market import front_month, generate

CT = ZoneInfo("America/Chicago")
START, DAYS = date(2026, 11, 16), 70  # Thanksgiving, Christmas, New Year's Day, and ES/FX/CL/metal expiries


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    paths = generate(out, roots=sorted(CONTRACT_SPECS), start=START, days=DAYS, seed=2, trades_per_minute=0.4)
    frames, definitions = {}, {}
    for root, path in paths.items():
        reading = read_records(path)
        frames[root] = pd.DataFrame({"ts": [r.ts_event for r in reading.records],
                                     "symbol": [reading.symbols[r.instrument_id] for r in reading.records],
                                     "size": [r.size for r in reading.records]})
        definitions[root] = read_records(path.with_name(f"{root}.definition.dbn")).records
    return frames, definitions


def test_each_product_lists_its_own_months_and_they_expire_on_its_last_trade_date(market):
    frames, definitions = market
    for root, defs in definitions.items():
        outrights = {d.raw_symbol: d for d in defs if str(d.instrument_class.value) == "F"}
        assert len(outrights) >= 3, root
        for raw, d in outrights.items():
            assert raw[len(root)] in LISTING_RULES[root].months, raw
            month = MONTH_CODES.index(raw[len(root)]) + 1
            year = 2020 + int(raw[-1]) if int(raw[-1]) >= 6 else 2030 + int(raw[-1])
            assert d.expiration == int(expiration(root, year, month).timestamp()) * 10**9, raw
            traded = frames[root].loc[frames[root]["symbol"] == raw, "ts"]
            assert traded.empty or (traded.max() < d.expiration and traded.min() >= d.activation), raw
    cl = {d.raw_symbol: d.pretty_expiration for d in definitions["CL"]}
    assert cl["CLZ6"] == datetime(2026, 11, 20, 13, 30, tzinfo=CT) and cl["CLF7"] == datetime(2026, 12, 21, 13, 30,
                                                                                                 tzinfo=CT)
    assert {d.raw_symbol for d in definitions["ES"] if "-" not in d.raw_symbol} == {"ESZ6", "ESH7", "ESM7", "ESU7"}
    assert {d.raw_symbol for d in definitions["GC"] if "-" not in d.raw_symbol} >= {"GCZ6", "GCG7", "GCJ7"}
    assert not any(d.raw_symbol.startswith(("GCF", "GCH", "SIF", "HGF")) for r in ("GC", "SI", "HG")
                   for d in definitions[r])  # metals list their active months only


def test_the_front_month_helper_names_the_busiest_contract_of_each_session(market):
    frames, _ = market
    for root in ("CL", "ES", "GC", "6C"):
        frame = frames[root][~frames[root]["symbol"].str.contains("-")]
        frame = frame.assign(session=session_dates(frame["ts"].to_numpy(dtype=np.int64)))
        busiest = frame.groupby(["session", "symbol"])["size"].sum().reset_index().sort_values("size")
        leaders = busiest.groupby("session").tail(1).set_index("session")["symbol"]
        mismatched = [s for s, sym in leaders.items() if front_month(root, pd.Timestamp(s).date()) != sym]
        assert len(mismatched) <= 1, (root, mismatched)  # a quiet session may rank the two close ones apart
    assert front_month("CL", date(2026, 11, 16)) == "CLF7" and front_month("ES", date(2026, 12, 14)) == "ESH7"


def local_times(frame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(frame["ts"].to_numpy().view("datetime64[ns]"), tz="UTC").tz_convert(CT)


def test_holiday_sessions_trade_as_globex_does(market):
    frames, _ = market
    local = local_times(frames["CL"])

    def traded(begin, end):
        return bool(((local >= pd.Timestamp(begin, tz=CT)) & (local < pd.Timestamp(end, tz=CT))).any())

    # Thanksgiving: Wednesday evening to Thursday noon, then Thursday evening on
    assert traded("2026-11-25 17:00", "2026-11-25 18:00") and traded("2026-11-26 11:00", "2026-11-26 12:00")
    assert not traded("2026-11-26 12:00", "2026-11-26 17:00") and traded("2026-11-26 17:00", "2026-11-26 18:00")
    # Christmas and New Year's Day: closed from the evening before to Sunday / the next evening
    assert not traded("2026-12-24 17:00", "2026-12-27 17:00") and traded("2026-12-27 17:00", "2026-12-27 18:00")
    assert not traded("2026-12-31 17:00", "2027-01-03 17:00")

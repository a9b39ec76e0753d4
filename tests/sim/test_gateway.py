"""The local gateway against the official databento client, and the synthetic market's properties."""
import hashlib
import time
from datetime import date, datetime, timezone
from pathlib import Path

import databento as db
import databento_dbn as dbn
import pandas as pd
import pytest

from trading.marketdata.dbnfile import read_records
from tests.conftest import glbx_samples
from trading.sim.gateway import Faults, LiveGateway
from trading.sim.market import generate

KEY = "db-" + "gatewayUnitTestKey000000000004"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("mkt")
    return generate(out, roots=["CL", "6A"], start=date(2026, 10, 29), days=6, seed=3, roll_day=3,
                    trades_per_minute=2.0)


def collect(gateway, symbols=("CL.FUT",), start=None, key=KEY, until=lambda got: got["heartbeats"] >= 2):
    client = db.Live(key=key, gateway="127.0.0.1", port=gateway.port)
    got = {"trades": [], "mappings": {}, "heartbeats": 0}

    def on_record(rec):
        if isinstance(rec, dbn.TradeMsg):
            got["trades"].append((rec.instrument_id, rec.ts_event, rec.price))
        elif isinstance(rec, dbn.SymbolMappingMsg):
            got["mappings"][rec.instrument_id] = rec.stype_out_symbol
        elif isinstance(rec, dbn.SystemMsg) and rec.is_heartbeat():
            got["heartbeats"] += 1

    client.add_callback(on_record)
    client.subscribe(dataset="GLBX.MDP3", schema="trades", stype_in="parent", symbols=list(symbols), start=start)
    client.start()
    deadline = time.monotonic() + 30
    while not until(got) and time.monotonic() < deadline and client.is_connected():
        time.sleep(0.05)
    connected = client.is_connected()
    if connected:
        client.stop()
    return got, connected


def test_official_client_receives_exactly_the_roots_records(files):
    source = read_records(files["CL"])
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1) as gateway:
        got, _ = collect(gateway)
    assert [(r.instrument_id, r.ts_event, r.price) for r in source.records] == got["trades"]
    assert set(got["mappings"].values()) == set(source.symbols.values())  # incl. the spread
    assert any("-" in s for s in got["mappings"].values()) and got["heartbeats"] >= 2


def test_start_replays_only_from_that_time(files):
    source = read_records(files["CL"])
    cut = source.records[len(source.records) // 2].ts_event
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1) as gateway:
        got, _ = collect(gateway, start=cut)
    assert got["trades"] == [(r.instrument_id, r.ts_event, r.price) for r in source.records if r.ts_event >= cut]


def test_bad_key_is_rejected_with_a_clear_error(files):
    with LiveGateway(list(files.values()), key=KEY) as gateway:
        with pytest.raises(Exception, match="Authentication failed"):
            collect(gateway, key="db-" + "wrongKey0000000000000000000000")
        assert gateway.counters.auth_rejected == 1


def test_drop_after_n_records_disconnects_the_client(files):
    with LiveGateway(list(files.values()), key=KEY, faults=Faults(drop_after=500)) as gateway:
        got, connected = collect(gateway, until=lambda got: False)
    assert not connected and len(got["trades"]) == 500 and gateway.counters.drops == 1


def test_generator_is_deterministic_and_realistic(files, tmp_path):
    again = generate(tmp_path, roots=["CL"], start=date(2026, 10, 29), days=6, seed=3, roll_day=3,
                     trades_per_minute=2.0)
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    assert digest(files["CL"]) == digest(again["CL"])
    assert digest(files["CL"].with_name("CL.definition.dbn")) == digest(again["CL"].with_name("CL.definition.dbn"))
    reading = read_records(files["CL"])
    frame = pd.DataFrame({"ts": [r.ts_event for r in reading.records],
                          "symbol": [reading.symbols[r.instrument_id] for r in reading.records],
                          "size": [r.size for r in reading.records]})
    local = pd.DatetimeIndex(frame["ts"].to_numpy().view("datetime64[ns]"), tz="UTC").tz_convert("America/Chicago")
    assert not (local.hour == 16).any()  # the daily halt
    assert not ((local.day_of_week == 5) | ((local.day_of_week == 6) & (local.hour < 17))).any()  # weekend
    spread = frame["symbol"].str.contains("-")
    outrights = frame[~spread]
    day = (local + pd.Timedelta(hours=7)).date
    busiest = outrights.groupby(pd.Series(day[~spread], index=outrights.index))
    leaders = busiest.apply(lambda g: g.groupby("symbol")["size"].sum().idxmax())
    assert list(leaders.unique()) == ["CLZ6", "CLF7"]  # roll_day=3: the volume moves inside the span
    assert set(outrights["symbol"]) == {"CLZ6", "CLF7", "CLG7"}  # three listed months, CL's monthly cycle
    assert set(frame.loc[spread, "symbol"]) == {"CLZ6-CLF7", "CLF7-CLG7"}  # the lead and the next
    first = datetime.fromtimestamp(frame["ts"].iloc[0] / 1e9, timezone.utc)
    assert first.astimezone(local.tz).hour == 17  # opens at 17:00 Chicago


def test_real_glbx_samples_decode(tmp_path):
    data = glbx_samples()
    readings = {p.name.split(".")[1]: read_records(p) for p in sorted(data.glob("test_data.*.dbn.zst"))}
    assert {"trades", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "mbp-1", "definition"} <= set(readings)
    assert all(r.ok for r in readings.values()), {k: r.problems for k, r in readings.items()}
    trades = readings["trades"]
    assert trades.symbols[trades.records[0].instrument_id] == "ESH1"
    prices = [r.price / 1e9 for r in trades.records]
    assert all(3000 < p < 4500 for p in prices)  # ES around the end of 2020
    bars = readings["ohlcv-1m"].records
    assert all(b.low <= b.open <= b.high and b.low <= b.close <= b.high for b in bars)


def test_truncated_and_garbage_files_are_counted_not_raised(files, tmp_path):
    blob = Path(files["CL"]).read_bytes()
    (tmp_path / "cut.dbn").write_bytes(blob[: len(blob) // 2 + 5])
    (tmp_path / "junk.dbn").write_bytes(b"not dbn at all" * 50)
    cut, junk = read_records(tmp_path / "cut.dbn"), read_records(tmp_path / "junk.dbn")
    assert cut.problems["truncated"] == 1 and len(cut.records) > 1000
    assert junk.problems["not_dbn"] == 1 and junk.records == [] and cut.bad and junk.bad


def test_a_hold_outlives_a_client_that_leaves_while_held(files):
    """A client gone while the replay waits at a hold (a reconnect on a slow machine) meets the same hold in
    its next session: nothing past the hold is sent before `release()`."""
    source = read_records(files["CL"])
    hold = source.records[len(source.records) // 2].ts_event
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1, faults=Faults(holds=[hold])) as gateway:
        first, _ = collect(gateway, until=lambda got: gateway.held.is_set())
        second, _ = collect(gateway, until=lambda got: gateway.held.is_set() and got["trades"])
        assert gateway.held.is_set()
        gateway.release()
        third, _ = collect(gateway, start=hold, until=lambda got: len(got["trades"]) >= 10)
    assert first["trades"] and max(t for _, t, _ in first["trades"]) < hold
    assert second["trades"] and max(t for _, t, _ in second["trades"]) < hold
    assert third["trades"][0][1] >= hold and not gateway.held.is_set()


def test_a_paced_market_starts_where_its_first_client_left_off(files):
    """A gateway restarted with its client (the demo appliance restarted): the client's restart point is the
    market's present, so what follows it arrives at once at the replay's pace, not after the whole replay
    up to there has been paced again (minutes of heartbeats, seen as a feed without trades)."""
    source = read_records(files["CL"])
    later = source.records[len(source.records) * 3 // 4].ts_event
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1, speed=60) as gateway:
        got, _ = collect(gateway, start=later, until=lambda got: len(got["trades"]) >= 3)
    assert len(got["trades"]) >= 3 and got["trades"][0][1] >= later

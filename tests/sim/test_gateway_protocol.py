"""The local gateway speaks to the official client as Databento's does: instrument definitions next to
trades (generated and real), subscription acknowledgements, end of replay, the client's heartbeat
interval, and error records for what it cannot serve."""
import time
from datetime import date, datetime, timezone

import databento as db
import databento_dbn as dbn
import pytest

from strategies.contracts import expiration
from tests.conftest import glbx_samples
from trading.sim.gateway import LiveGateway
from trading.sim.market import generate
from trading.sim.replay import ReplaySource

KEY = "db-" + "gatewayProtocolTestKey0000005"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("mkt")
    return generate(out, roots=["CL", "6A"], start=date(2026, 11, 16), days=6, seed=3, trades_per_minute=1.0)


def session(gateway, subscriptions, until, timeout=30.0, **live):
    """[(monotonic time, record)] the official client received until `until(records)` or `timeout`."""
    client = db.Live(key=KEY, gateway="127.0.0.1", port=gateway.port, **live)
    got = []
    client.add_callback(lambda rec: got.append((time.monotonic(), rec)))
    for sub in subscriptions:
        client.subscribe(dataset="GLBX.MDP3", **{"stype_in": "parent", **sub})
    client.start()
    deadline = time.monotonic() + timeout
    while not until(got) and time.monotonic() < deadline and client.is_connected():
        time.sleep(0.02)
    if client.is_connected():
        client.stop()
    return got


def of(got, kind):
    return [rec for _, rec in got if isinstance(rec, kind)]


def heartbeats(n):
    return lambda got: sum(isinstance(r, dbn.SystemMsg) and r.is_heartbeat() for _, r in got) >= n


def test_definitions_of_the_generated_market_come_before_each_contracts_first_trade(files):
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1) as gateway:
        got = session(gateway, [{"schema": "trades", "symbols": ["CL.FUT"]},
                                {"schema": "definition", "symbols": ["CL.FUT"], "start": 0}], heartbeats(2))
    definitions = {d.raw_symbol: d for d in of(got, dbn.InstrumentDefMsg)}
    assert {s for s, d in definitions.items() if d.instrument_class == dbn.InstrumentClass.FUTURE} == \
        {"CLZ6", "CLF7", "CLG7", "CLH7"}  # CLH7 is listed when CLZ6 expires (2026-11-20)
    spreads = {s for s, d in definitions.items() if d.instrument_class == dbn.InstrumentClass.FUTURE_SPREAD}
    assert "CLF7-CLG7" in spreads and all("-" in s for s in spreads)
    assert definitions["CLZ6"].expiration == int(expiration("CL", 2026, 12).timestamp()) * 10**9
    assert definitions["CLZ6"].pretty_expiration == datetime(2026, 11, 20, 19, 30, tzinfo=timezone.utc)
    order = [rec for _, rec in got if isinstance(rec, (dbn.InstrumentDefMsg, dbn.TradeMsg))]
    first_trade = {}
    for i, rec in enumerate(order):
        if isinstance(rec, dbn.TradeMsg):
            first_trade.setdefault(rec.instrument_id, i)
    first_definition = {}
    for i, rec in enumerate(order):
        if isinstance(rec, dbn.InstrumentDefMsg):
            first_definition.setdefault(rec.instrument_id, i)
    assert first_trade and all(first_definition[iid] < i for iid, i in first_trade.items())
    clz6 = definitions["CLZ6"].instrument_id
    assert max(r.ts_event for r in of(got, dbn.TradeMsg) if r.instrument_id == clz6) < definitions["CLZ6"].expiration


def test_real_sample_definition_is_served_before_its_trades():
    with LiveGateway([glbx_samples() / "test_data.trades.dbn.zst"], key=KEY, heartbeat_interval=0.1) as gateway:
        got = session(gateway, [{"schema": "trades", "symbols": ["ES.FUT"], "start": 0},
                                {"schema": "definition", "symbols": ["ES.FUT"], "start": 0}], heartbeats(1))
    records = [r for _, r in got if isinstance(r, (dbn.InstrumentDefMsg, dbn.TradeMsg))]
    assert isinstance(records[0], dbn.InstrumentDefMsg) and len(records) == 5
    definition = records[0]
    assert (definition.raw_symbol, definition.instrument_id, definition.asset) == ("ESH1", 5482, "ES")
    assert definition.pretty_expiration == datetime(2021, 3, 19, 13, 30, tzinfo=timezone.utc)
    assert {r.instrument_id for r in records[1:]} == {5482}


def test_subscriptions_are_acknowledged_and_each_replay_says_when_it_is_done(files):
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1) as gateway:
        got = session(gateway, [{"schema": "trades", "symbols": ["CL.FUT"], "start": 0},
                                {"schema": "definition", "symbols": ["CL.FUT"], "start": 0}], heartbeats(1))
    system = [r for r in of(got, dbn.SystemMsg) if not r.is_heartbeat()]
    acks = [r.msg for r in system if r.code == dbn.SystemCode.SUBSCRIPTION_ACK]
    done = [r.msg for r in system if r.code == dbn.SystemCode.REPLAY_COMPLETED]
    assert acks == ["Subscription request 0 for trades data succeeded",
                    "Subscription request 1 for definition data succeeded"]
    assert sorted(done) == ["Finished definition replay", "Finished trades replay"]
    records = [r for _, r in got]
    assert records.index(next(r for r in system if r.code == dbn.SystemCode.SUBSCRIPTION_ACK)) < \
        records.index(of(got, dbn.TradeMsg)[0])  # acknowledged before any data
    last_trade = max(i for i, r in enumerate(records) if isinstance(r, dbn.TradeMsg))
    finished = next(i for i, r in enumerate(records) if getattr(r, "msg", "") == "Finished trades replay")
    assert finished == last_trade + 1  # the trades replay ends right after its last record


def test_the_clients_heartbeat_interval_is_honoured():
    """No interval forced on the gateway: the client asks for 10 s, the first heartbeat after the data
    comes 10 s after it (Databento's default would be 30 s)."""
    with LiveGateway([glbx_samples() / "test_data.trades.dbn.zst"], key=KEY) as gateway:
        got = session(gateway, [{"schema": "trades", "symbols": ["ES.FUT"], "start": 0}], heartbeats(1),
                      timeout=25, heartbeat_interval_s=10)
    end = next(t for t, r in got if isinstance(r, dbn.SystemMsg) and r.code == dbn.SystemCode.REPLAY_COMPLETED)
    beat = next(t for t, r in got if isinstance(r, dbn.SystemMsg) and r.is_heartbeat())
    assert 9.5 <= beat - end <= 12.0, beat - end
    assert gateway.counters.auth_requests[0]["heartbeat_interval_s"] == "10"


def test_an_unsupported_schema_gets_an_error_record_and_the_session_ends(files):
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1) as gateway:
        got = session(gateway, [{"schema": "mbo", "symbols": ["CL.FUT"]}], lambda got: of(got, dbn.ErrorMsg),
                      timeout=10)
    errors = of(got, dbn.ErrorMsg)
    assert len(errors) == 1 and errors[0].code == dbn.ErrorCode.INVALID_SUBSCRIPTION and "mbo" in errors[0].err
    assert not of(got, dbn.TradeMsg)


def test_an_unknown_symbol_gets_an_error_record_and_the_others_still_flow(files):
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.1) as gateway:
        got = session(gateway, [{"schema": "trades", "symbols": ["CL.FUT", "ZZ.FUT"]}], heartbeats(1))
    errors = of(got, dbn.ErrorMsg)
    assert [(e.code, e.err) for e in errors] == [(dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED,
                                                  "Failed to resolve symbol: ZZ.FUT")]
    assert len(of(got, dbn.TradeMsg)) > 1000


def test_a_paced_market_starts_with_its_first_trade_for_the_first_client_and_at_its_present_after(files):
    """Without start=, the first client of a paced gateway gets the market from its very first trade (the
    market starts with it); a later one gets it from the market's present, as Databento's Live does."""
    first = min(r.ts for r in ReplaySource(list(files.values())).records if r.schema == "trades")
    with LiveGateway(list(files.values()), key=KEY, heartbeat_interval=0.2, speed=20_000) as gateway:
        one = session(gateway, [{"schema": "trades", "symbols": ["CL.FUT", "6A.FUT"]}], lambda got: len(got) > 50)
        two = session(gateway, [{"schema": "trades", "symbols": ["CL.FUT", "6A.FUT"]}], lambda got: len(got) > 50)
    assert of(one, dbn.TradeMsg)[0].ts_event == first
    assert of(two, dbn.TradeMsg)[0].ts_event > of(one, dbn.TradeMsg)[-1].ts_event - 10**9

"""The Historical stand-in against the official `databento.Historical` client: the endpoints warmup
uses, over HTTPS, and Databento's error answers."""
from datetime import date, datetime, timezone

import databento as db
import databento_dbn as dbn
import pytest

from trading.sim.historical import HistoricalStandIn
from trading.sim.market import generate

KEY = "db-" + "historicalStandInKey000000006"
START, END = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    out = tmp_path_factory.mktemp("hist")
    paths = generate(out, roots=["CL"], start=date(2026, 11, 2), days=4, seed=8, trades_per_minute=1.0)
    with HistoricalStandIn(out, key=KEY) as server:
        yield server, paths


@pytest.fixture
def client(standin, monkeypatch):
    server, _ = standin
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    return db.Historical(KEY, gateway=server.url)


def get(client, schema="ohlcv-1h", symbols=("CL.FUT",), **kw):
    return client.timeseries.get_range(dataset="GLBX.MDP3", start=START, end=END, symbols=list(symbols),
                                       schema=schema, stype_in="parent", **kw)


def test_ohlcv_of_every_contract_of_the_parent_is_built_from_its_trades(standin, client):
    server, paths = standin
    frame = get(client).to_df(price_type="float").reset_index()
    trades = db.DBNStore.from_file(paths["CL"]).to_df(price_type="float").reset_index()
    trades = trades[(trades["ts_event"] >= START) & (trades["ts_event"] < END)]
    hours = trades.assign(hour=trades["ts_event"].dt.floor("h")).groupby(["hour", "instrument_id"])
    assert len(frame) == hours.ngroups and set(frame["instrument_id"]) == set(trades["instrument_id"])
    first = frame.iloc[0]
    group = hours.get_group((first["ts_event"], first["instrument_id"]))
    assert (first["open"], first["high"], first["close"], first["volume"]) == (
        group["price"].iloc[0], group["price"].max(), group["price"].iloc[-1], group["size"].sum())
    assert server.calls("timeseries.get_range")[-1]["form"]["compression"] == "zstd"


def test_definitions_and_cost(standin, client):
    definitions = list(get(client, schema="definition"))
    assert {d.raw_symbol for d in definitions} >= {"CLZ6", "CLF7", "CLG7", "CLZ6-CLF7"}
    assert all(isinstance(d, dbn.InstrumentDefMsg) for d in definitions)
    cost = client.metadata.get_cost(dataset="GLBX.MDP3", start=START, end=END, symbols=["CL.FUT"], schema="ohlcv-1h",
                                    stype_in="parent")
    assert 0 < cost < 1


@pytest.mark.parametrize("answer, error, status", [
    ({"status": 429, "retry_after": "0"}, db.BentoClientError, 429),
    ({"status": 503}, db.BentoServerError, 503),
    ({"cut_after": 300}, db.BentoError, None),
])
def test_scripted_answers_reach_the_client_as_databentos_do(standin, client, answer, error, status):
    server, _ = standin
    server.script(answer)
    with pytest.raises(error) as caught:
        get(client)
    if status:
        assert caught.value.http_status == status
    if status == 429:
        assert caught.value.headers["Retry-After"] == "0"
    assert len(get(client).to_df()) > 0  # the next request is answered normally


def test_wrong_key_and_unknown_symbols_are_refused(standin, monkeypatch):
    server, _ = standin
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    with pytest.raises(db.BentoClientError, match="Authentication failed") as caught:
        get(db.Historical("db-" + "wrongKey0000000000000000000000", gateway=server.url))
    assert caught.value.http_status == 401
    with pytest.raises(db.BentoClientError, match="ZZ.FUT") as caught:
        get(db.Historical(KEY, gateway=server.url), symbols=["ZZ.FUT"])
    assert caught.value.http_status == 422
    assert all("auth" not in str(r).lower() and KEY not in str(r) for r in server.requests)

"""`manage.py warmup --days 370` through the official `databento.Historical` client against the local
stand-in: the bar store gets the hub's front-month bars and the contracts; the cost comes first;
the cache makes a second run free; Databento's errors end in a message that says what to do."""
from datetime import date, datetime, timezone

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from strategies.bars import frame_from_bars
from tests.marketdata.hubrun import feed
from trading.marketdata.barstore import load_frame
from trading.marketdata.roll import FrontMonth
from trading.models import Contract, Instrument, StoredBar
from trading.sim.historical import HistoricalStandIn
from trading.sim.market import generate

pytestmark = pytest.mark.django_db
KEY = "db-" + "warmupHistoricalTestKey000007"
END = "2026-11-28"


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Six weeks of CL and 6A: CL rolls twice (CLX6 → CLZ6 → CLF7) by the products' own schedule."""
    out = tmp_path_factory.mktemp("history")
    paths = generate(out, roots=["CL", "6A"], start=date(2026, 10, 12), days=45, seed=12, trades_per_minute=1.0)
    with HistoricalStandIn(out, key=KEY) as standin:
        yield standin, paths


@pytest.fixture
def standin(market, runtime_dir, settings, monkeypatch, webhook_env):
    server, _ = market
    settings.DATABENTO_HISTORICAL_GATEWAY = server.url
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    call_command("load_demo")
    server.requests.clear()
    return server


def warmup(*args, **options):
    call_command("warmup", "--days", "370", "--end", END, "--roots", "CL,6A", *args, **options)


def test_warmup_stores_the_hubs_front_month_bars_and_the_contracts_and_a_second_run_downloads_nothing(
        standin, market, capsys):
    _, paths = market
    warmup()
    out = capsys.readouterr().out
    assert out.index("Databento: $") < out.index("CL 1h")  # the cost, before anything is downloaded
    assert len(standin.calls("timeseries.get_range")) == 4 and standin.downloads == 4
    for root in ("CL", "6A"):
        instrument = Instrument.objects.get(root=root)
        run = feed([paths[root]], {root: FrontMonth(root, instrument.roll_rule, instrument.roll_days_before_expiry)})
        hub = frame_from_bars(run.bars[root]["1h"])
        stored = load_frame(root, "1h")
        assert len(stored) == len(hub) > 500, root
        assert (stored["ts"].to_numpy() == hub["ts"].to_numpy()).all(), root
        for col in ("open", "high", "low", "close", "volume"):
            assert (abs(stored[col].to_numpy() - hub[col].to_numpy()) < 1e-9).all(), (root, col)
        contracts = dict(StoredBar.objects.filter(root=root, timeframe="1h").values_list("ts", "contract"))
        assert [contracts[b.ts] for b in run.bars[root]["1h"]] == [b.contract for b in run.bars[root]["1h"]]
        if root == "CL":
            assert [(r.from_contract, r.to_contract) for r in run.rolls] == [("", "CLX6"), ("CLX6", "CLZ6"),
                                                                            ("CLZ6", "CLF7")]
    cl = {c.raw_symbol: c for c in Contract.objects.filter(instrument__root="CL")}
    assert cl["CLZ6"].expiration == datetime(2026, 11, 20, 19, 30, tzinfo=timezone.utc)
    assert max(cl.values(), key=lambda c: c.last_session_volume).raw_symbol == "CLF7"  # the last session's busiest
    requests, bars = len(standin.requests), StoredBar.objects.count()
    warmup()
    assert "nothing to download" in capsys.readouterr().out
    assert len(standin.requests) == requests and StoredBar.objects.count() == bars  # no request at all


def test_a_rate_limit_answer_is_retried_and_the_warmup_completes(standin):
    standin.script({"status": 429, "retry_after": "0"})
    warmup("--roots", "CL")
    assert len(standin.calls("timeseries.get_range")) == 3  # one refused, then both downloads
    assert load_frame("CL", "1h").shape[0] > 500


def test_a_connection_cut_midway_leaves_no_cache_file_and_a_clear_error(standin, runtime_dir):
    standin.script({"cut_after": 100})
    with pytest.raises(CommandError, match="was cut off .*nothing was cached: run warmup again"):
        warmup("--roots", "CL")
    assert not list((runtime_dir / "warmup").iterdir())  # not the file, not a part of it
    assert not StoredBar.objects.exists()


def test_a_download_above_the_cost_limit_needs_yes(standin, capsys):
    with pytest.raises(CommandError, match=r"costs \$0\.\d\d, more than \$0\.00 .*run again with --yes"):
        warmup("--roots", "CL", "--max-cost", "0")
    assert not standin.calls("timeseries.get_range")
    warmup("--roots", "CL", "--max-cost", "0", "--yes")
    assert len(standin.calls("timeseries.get_range")) == 2


@pytest.mark.parametrize("setup, message", [
    ({"key": "db-" + "notTheRightKey0000000000000000"}, r"refused the API key \(401\).*DATABENTO_API_KEY"),
    ({"roots": "ZZ"}, r"cannot serve .*ZZ\.FUT.*\(422\).*could not resolve symbols: ZZ\.FUT"),
    ({"script": {"status": 503}}, r"failed definition of CL\.FUT .*\(503\) on 1 attempt:.*try again later"),
])
def test_databentos_errors_end_the_warmup_with_what_to_do(standin, monkeypatch, setup, message):
    if "key" in setup:
        monkeypatch.setenv("DATABENTO_API_KEY", setup["key"])
    if "script" in setup:
        standin.script(setup["script"])
    with pytest.raises(CommandError, match=message):
        call_command("warmup", "--days", "370", "--end", END, "--roots", setup.get("roots", "CL"), "--retries", "0")

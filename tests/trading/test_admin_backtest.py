"""Backtests from the admin: started with Django's test client (Celery eager), they give the trades of
`python -m strategies.backtest` run as a subprocess on the same bars exported to CSV, trade by trade; wrong
inputs are field errors, a failure is stored with its message, and only the add permission starts one."""
import csv
import json
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from strategies.calendar import session_end, session_open
from strategies.synthetic import strategy_bars
from trading.backtests import run_backtest
from trading.marketdata.barstore import store_bars, warm_from_paths
from trading.models import BacktestRun, Instrument, StoredBar, Strategy, StrategyInstrument
from trading.sim.market import generate

pytestmark = pytest.mark.django_db
BASE = Path(__file__).resolve().parents[2]
ROOTS = ["6A", "CL", "GC"]
START, DAYS = date(2026, 10, 26), 10
ADD = "admin:trading_backtestrun_add"


@pytest.fixture(scope="module")
def market_files(tmp_path_factory):
    """Two weeks of generated CME trades (and definitions) for three roots of ibs_a, CL rolling in the span."""
    return generate(tmp_path_factory.mktemp("market"), roots=ROOTS, start=START, days=DAYS, seed=11, roll_day=4,
                    trades_per_minute=1.5)


@pytest.fixture
def eager(monkeypatch):
    from pineops.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)


@pytest.fixture
def desk(webhook_env, market_files):
    """ibs_a trading 6A, CL and GC on one commission (the CLI takes one), the bar store filled by warmup."""
    call_command("load_demo")
    warm_from_paths(market_files.values(), set(ROOTS))
    legs = StrategyInstrument.objects.filter(strategy__name="ibs_a")
    legs.exclude(instrument__root__in=ROOTS).update(enabled=False)
    legs.update(ml_enabled=False, commission_per_side=Decimal("2.10"), size=2)
    Strategy.objects.filter(name="ibs_a").update(stop_loss_pct=0.6, max_positions=2)
    return Strategy.objects.get(name="ibs_a")


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", password="pw-for-tests-only"))
    return client


def start_backtest(client, capture, strategy, first, last, instrument=None, use_ml=False):
    data = {"strategy": strategy.pk, "instrument": instrument.pk if instrument else "",
            "start_date": first.isoformat(), "end_date": last.isoformat()}
    if use_ml:
        data["use_ml"] = "on"
    with capture(execute=True):
        response = client.post(reverse(ADD), data)
    return response


def export_csv(root: str, first: date, last: date, path: Path) -> Path:
    """The bar store's hourly bars of the sessions, as a bars CSV the CLI reads."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "open", "high", "low", "close", "volume"])
        for bar in StoredBar.objects.filter(root=root, timeframe="1h", ts__gte=session_open(first),
                                            ts__lt=session_end(last)).order_by("ts"):
            writer.writerow([f"{bar.ts:%Y-%m-%dT%H:%M:%SZ}", repr(bar.open), repr(bar.high), repr(bar.low),
                             repr(bar.close), bar.volume])
    return path


def cli_trades(tmp_path, roots, first, last, *args) -> list[dict]:
    csvs = [str(export_csv(root, first, last, tmp_path / f"{root}.csv")) for root in roots]
    which = ["--symbols", ",".join(roots)] if len(roots) > 1 else ["--symbol", roots[0]]
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "strategies.backtest", *csvs, *which, "--trades",
                           str(tmp_path / "trades.csv"), "--report", str(report), *args],
                          cwd=BASE, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text())["trade_list"]


def assert_same_trades(admin_trades, cli):
    assert len(admin_trades) == len(cli) > 0
    for mine, theirs in zip(admin_trades, cli):
        for key in ("symbol", "entry_time", "exit_time", "entry_price", "exit_price", "size", "exit_reason",
                    "bars_held"):
            assert mine[key] == theirs[key], (key, mine, theirs)
        assert Decimal(str(mine["pnl"])) == Decimal(str(theirs["pnl"])).quantize(Decimal("0.01")), (mine, theirs)


def test_a_whole_strategy_backtest_from_the_admin_gives_the_clis_trades(staff, desk, eager, tmp_path,
                                                                          django_capture_on_commit_callbacks):
    first, last = START + timedelta(days=1), START + timedelta(days=8)
    response = start_backtest(staff, django_capture_on_commit_callbacks, desk, first, last)
    run = BacktestRun.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{run.pk}/change/")
    assert run.state == "done", run.error
    assert run.progress == 100 and run.requested_by.username == "ops" and run.bars > 400
    cli = cli_trades(tmp_path, ROOTS, first, last, "--max-positions", "2", "--commission", "2.1", "--size", "2",
                     "--set", "stop_loss_pct=0.6", "--no-ml")
    assert_same_trades(run.trades, cli)
    assert {t["symbol"] for t in run.trades} == set(ROOTS)
    total = sum(Decimal(str(t["pnl"])) for t in cli)
    assert Decimal(str(run.metrics["total_pnl"])) == total == Decimal(str(run.equity[-1][1]))
    page = staff.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' not in page  # finished: the page no longer refreshes itself
    assert page.count('<tr class="trade">') == len(cli) and "<svg" in page and "Metrics" in page
    assert f"{run.metrics['total_pnl']:,.2f}" in page


def test_one_instrument_of_the_strategy_gives_the_clis_trades_for_that_root(staff, desk, eager, tmp_path,
                                                                           django_capture_on_commit_callbacks):
    cl = Instrument.objects.get(root="CL")
    first, last = START, START + timedelta(days=DAYS - 1)
    start_backtest(staff, django_capture_on_commit_callbacks, desk, first, last, instrument=cl)
    run = BacktestRun.objects.get()
    assert run.state == "done", run.error
    assert list(run.terms["legs"]) == ["CL"]
    cli = cli_trades(tmp_path, ["CL"], first, last, "--commission", "2.1", "--size", "2", "--set",
                     "stop_loss_pct=0.6", "--no-ml")
    assert_same_trades(run.trades, cli)


def test_with_the_ml_filter_the_admin_scores_as_the_cli_does(staff, webhook_env, eager, tmp_path,
                                                             django_capture_on_commit_callbacks):
    """The demo models read every instrument of ibs_a: the whole strategy, its models from MODELS_DIR."""
    call_command("load_demo")
    roots = sorted(StrategyInstrument.objects.filter(strategy__name="ibs_a", enabled=True)
                   .values_list("instrument__root", flat=True))
    for root, frame in strategy_bars(roots, 700, seed=5, start="2026-09-01").items():
        store_bars(root, "1h", frame, "test")
    StrategyInstrument.objects.filter(strategy__name="ibs_a").update(ml_enabled=True, commission_per_side=Decimal("1.25"),
                                                                   ml_threshold=None)
    strategy = Strategy.objects.get(name="ibs_a")
    first, last = date(2026, 9, 2), date(2026, 10, 9)
    start_backtest(staff, django_capture_on_commit_callbacks, strategy, first, last, use_ml=True)
    run = BacktestRun.objects.get()
    assert run.state == "done", run.error
    assert run.notes == [] and any(t["ml_score"] is not None for t in run.trades)
    cli = cli_trades(tmp_path, roots, first, last, "--max-positions", str(strategy.max_positions),
                     "--commission", "1.25", "--set", f"ml_threshold={strategy.ml_threshold}")
    assert_same_trades(run.trades, cli)


def test_running_the_task_twice_for_one_run_changes_nothing(desk):
    run = BacktestRun.objects.create(strategy=desk, start_date=START, end_date=START + timedelta(days=3))
    assert run_backtest(run.pk) == "done"
    done = BacktestRun.objects.get(pk=run.pk)
    assert run_backtest(run.pk) == "done"
    again = BacktestRun.objects.get(pk=run.pk)
    assert again.trades == done.trades and again.updated_at == done.updated_at and BacktestRun.objects.count() == 1


@pytest.mark.parametrize("change, field, message", [
    ({"start_date": "2026-10-31", "end_date": "2026-10-31"}, "start_date",
     "no hourly bars of 6A, CL, GC in the bar store for the sessions 2026-10-31 to 2026-10-31"),
    ({"start_date": "2025-01-06", "end_date": "2025-01-10"}, "end_date", "before the first session in the bar store"),
    ({"start_date": "2026-10-29", "end_date": "2026-10-27"}, "end_date", "the end 2026-10-27 is before the start"),
    ({"instrument": "SI"}, "instrument", "SI is not an instrument of ibs_a (it trades"),
    ({"start_date": "27/10/2026"}, "start_date", "Enter a valid date"),
])
def test_wrong_inputs_are_field_errors_and_queue_nothing(staff, desk, change, field, message, eager,
                                                         django_capture_on_commit_callbacks):
    data = {"strategy": desk.pk, "instrument": "", "start_date": "2026-10-27", "end_date": "2026-10-30", **change}
    if change.get("instrument"):
        data["instrument"] = Instrument.objects.get(root=change["instrument"]).pk
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = staff.post(reverse(ADD), data)
    assert response.status_code == 200 and not callbacks and not BacktestRun.objects.exists()
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field]), errors


def test_the_add_form_says_what_the_bar_store_holds(staff, desk):
    page = staff.get(reverse(ADD)).content.decode()
    assert "(first → last session): 6A 2026-10-26 → 2026-11-04; CL 2026-10-26 → 2026-11-04; GC 2026-10-26 → " \
           "2026-11-04; none of 6B," in page
    assert '<optgroup label="ibs_a">' in page and "CL (ibs_a)</option>" in page and "HG (ibs_a), disabled" in page
    assert 'value="Run backtest"' in page and "Save and add another" not in page


def test_a_failure_is_stored_with_its_message_and_shown_escaped(staff, desk):
    run = BacktestRun.objects.create(strategy=desk, instrument=Instrument.objects.get(root="GC"), start_date=START,
                                     end_date=START + timedelta(days=2))
    StoredBar.objects.filter(root="GC").delete()  # gone between the form and the Celery worker
    assert run_backtest(run.pk) == "failed"
    run.refresh_from_db()
    assert run.state == "failed" and run.finished_at is not None and run.trades == []
    assert run.error.startswith(f"no hourly bars of GC in the bar store for the sessions {START} to "
                                f"{START + timedelta(days=2)}") and "none of GC" in run.error
    BacktestRun.objects.filter(pk=run.pk).update(error="<script>alert(1)</script>")
    page = staff.get(reverse("admin:trading_backtestrun_change", args=[run.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert 'http-equiv="refresh"' not in page


def test_a_queued_run_page_refreshes_itself_and_shows_its_progress(staff, desk):
    run = BacktestRun.objects.create(strategy=desk, start_date=START, end_date=START + timedelta(days=2))
    page = staff.get(reverse("admin:trading_backtestrun_change", args=[run.pk])).content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page and '<progress max="100" value="0">' in page


def test_only_the_add_permission_starts_a_backtest(client, desk, django_user_model, eager,
                                                  django_capture_on_commit_callbacks):
    viewer = django_user_model.objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_backtestrun"))
    client.force_login(viewer)
    data = {"strategy": desk.pk, "start_date": "2026-10-27", "end_date": "2026-10-30"}
    assert client.get(reverse(ADD)).status_code == 403
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert client.post(reverse(ADD), data).status_code == 403
    assert not callbacks and not BacktestRun.objects.exists()
    assert client.get(reverse("admin:trading_backtestrun_changelist")).status_code == 200
    viewer.user_permissions.add(Permission.objects.get(codename="add_backtestrun"))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse(ADD), data).status_code == 302
    assert BacktestRun.objects.get().state == "done"

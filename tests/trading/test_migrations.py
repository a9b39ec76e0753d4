"""Data migrations on real rows: tickers from before templates name each order's contract afterwards."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE, AFTER = ("trading", "0012_contracts"), ("trading", "0013_legs_roll_policy_and_contract_tickers")


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def test_fixed_tickers_become_templates_that_name_the_contract():
    apps = migrate(BEFORE)
    try:
        Strategy, Instrument = apps.get_model("trading", "Strategy"), apps.get_model("trading", "Instrument")
        Leg = apps.get_model("trading", "StrategyInstrument")
        strategy = Strategy.objects.create(name="mig", broker_webhook="${X}", discord_webhook="${Y}")
        tickers = {"CL": "CL", "GC": "MGC", "ES": "ES1!", "SI": "SIZ2026", "HG": ""}
        for root, ticker in tickers.items():
            instrument = Instrument.objects.create(root=root, name=root, exchange="CME", point_value=1,
                                                   tick_size=1, tick_value=1)
            Leg.objects.create(strategy=strategy, instrument=instrument, ticker=ticker)
        migrate(AFTER)
    finally:
        migrate(("trading", max_migration()))
    from trading.models import StrategyInstrument

    after = {leg.instrument.root: (leg.ticker, leg.roll_policy) for leg in StrategyInstrument.objects.all()}
    assert after == {"CL": ("", "exit"), "GC": ("MGC{month}{y}", "exit"), "ES": ("", "exit"), "SI": ("", "exit"),
                     "HG": ("", "exit")}
    legs = {leg.instrument.root: leg for leg in StrategyInstrument.objects.select_related("instrument")}
    assert [legs[r].broker_ticker(c) for r, c in (("CL", "CLZ6"), ("GC", "GCG7"), ("ES", "ESZ6"))] == [
        "CLZ6", "MGCG7", "ESZ6"]


def max_migration() -> str:
    from django.db.migrations.loader import MigrationLoader

    return max(name for app, name in MigrationLoader(connection).graph.leaf_nodes() if app == "trading")

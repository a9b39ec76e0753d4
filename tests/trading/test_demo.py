from decimal import Decimal

import pytest
from django.core import serializers
from django.core.management import call_command

from trading.models import Instrument, Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db

EXPECTED_POINT_VALUES = {"6A": 100000, "6B": 62500, "6C": 100000, "6M": 500000, "6N": 100000, "6S": 125000,
                         "CL": 1000, "GC": 100, "HG": 25000, "SI": 5000, "YM": 5, "ES": 50}


def snapshot():
    rows = [*Instrument.objects.all(), *Strategy.objects.all(), *StrategyInstrument.objects.all()]
    return serializers.serialize("json", rows)


def test_load_demo_creates_the_design_instruments_and_strategies(capsys):
    call_command("load_demo")
    specs = {i.root: i for i in Instrument.objects.all()}
    assert {root: int(i.point_value) for root, i in specs.items()} == EXPECTED_POINT_VALUES
    assert specs["6M"].tick_size == Decimal("0.00001") and specs["6M"].tick_value == Decimal("5")
    assert specs["HG"].tick_value == Decimal("12.5") and specs["SI"].tick_size == Decimal("0.005")
    for inst in specs.values():
        inst.full_clean()  # tick value agrees with tick size × point value
    a, b = Strategy.objects.get(name="ibs_a"), Strategy.objects.get(name="ibs_b")
    assert sorted(a.legs.values_list("instrument__root", flat=True)) == ["6A", "6C", "6M", "CL", "GC", "HG"]
    assert sorted(b.legs.values_list("instrument__root", flat=True)) == ["6B", "6N", "6S", "SI", "YM"]
    assert (a.max_positions, b.max_positions) == (2, 3)
    commissions = {leg.instrument.root: leg.commission_per_side for leg in a.legs.select_related("instrument")}
    assert commissions["6A"] == commissions["6C"] == Decimal("4.5") and commissions["CL"] == Decimal("1.25")
    assert a.broker_webhook == "${TRADERSPOST_IBS_A_WEBHOOK}" and a.time_in_force == "day"
    assert a.params().entry_windows == "00:00-15:00,17:00-24:00"


def test_load_demo_twice_changes_nothing(capsys, webhook_env):
    call_command("load_demo")
    before = snapshot()
    call_command("load_demo")
    assert snapshot() == before
    assert "nothing changed" in capsys.readouterr().out


def test_load_demo_keeps_operator_edits(webhook_env):
    call_command("load_demo")
    Strategy.objects.filter(name="ibs_a").update(max_positions=5)
    call_command("load_demo")
    assert Strategy.objects.get(name="ibs_a").max_positions == 5


def test_load_demo_warns_about_unset_secrets_without_printing_values(capsys, monkeypatch):
    monkeypatch.delenv("TRADERSPOST_IBS_A_WEBHOOK", raising=False)
    call_command("load_demo")
    assert "TRADERSPOST_IBS_A_WEBHOOK is not set" in capsys.readouterr().err

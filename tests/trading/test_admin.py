"""The admin through Django's test client: login everywhere, validation messages, masking, CSV."""
import csv
import html
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.adminforms import strategy_form_data
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from trading.models import KillSwitch, KillSwitchEvent, Signal, Strategy, Trade

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(webhook_env):
    call_command("load_demo")


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", password="pw-for-tests-only")
    client.force_login(user)
    return client


def test_every_admin_page_requires_login(client, demo):
    for name in ["admin:index", "admin:trading_strategy_changelist", "admin:trading_trade_changelist",
                 "admin:trading_killswitch_change"]:
        args = [1] if name.endswith("_change") else []
        response = client.get(reverse(name, args=args))
        assert response.status_code == 302 and "/login/" in response["Location"], name


def test_strategy_page_masks_the_webhook_secret(staff, demo, webhook_env):
    strategy = Strategy.objects.get(name="ibs_a")
    page = staff.get(reverse("admin:trading_strategy_change", args=[strategy.pk])).content.decode()
    assert "${TRADERSPOST_IBS_A_WEBHOOK}" in page
    for secret in webhook_env.values():
        assert secret not in page
        assert secret.rsplit("/", 1)[-1] not in page  # not even the token part
    listing = staff.get(reverse("admin:trading_strategy_changelist")).content.decode()
    assert all(secret not in listing for secret in webhook_env.values())


def strategy_form(strategy, **changes):
    return strategy_form_data(strategy, **changes)


@pytest.mark.parametrize("change, message", [
    ({"ibs_entry_high": "1.4"}, "1.4 is outside [0, 1]"),
    ({"entry_windows": "9-5"}, "cannot parse"),
    ({"broker_webhook": "${NOPE"}, "not a valid reference"),
    ({"broker_webhook": "${PINEOPS_UNSET_VAR}"}, "PINEOPS_UNSET_VAR is not set"),
    ({"legs-0-size": "0"}, "at least 1 contract"),
    ({"legs-0-overrides": '{"bogus": 1}'}, "unknown parameter"),
    ({"legs-0-ticker": "6A"}, "does not name the contract"),  # a bare root: the broker would pick the contract
    ({"legs-0-ticker": "6A1!"}, "does not name the contract"),  # a continuous symbol
    ({"legs-0-ticker": "6AZ6"}, "a fixed contract goes stale at the roll"),
    ({"legs-0-ticker": "{year:999}"}, "takes no format"),
    ({"legs-0-ticker": "{contract!r}"}, "takes no format"),
    ({"legs-0-ticker": "{expiry}"}, "unknown field {expiry}"),
    ({"legs-0-ticker": "{contract"}, "is not a ticker template"),
    ({"legs-0-roll_policy": "sometimes"}, "Select a valid choice"),
])
def test_strategy_form_refuses_bad_values_with_clear_messages(staff, demo, change, message):
    strategy = Strategy.objects.get(name="ibs_a")
    response = staff.post(reverse("admin:trading_strategy_change", args=[strategy.pk]), strategy_form(strategy, **change))
    assert response.status_code == 200  # form shown again, not saved
    assert message in response.content.decode()
    assert Strategy.objects.get(pk=strategy.pk).updated_at == strategy.updated_at


def test_strategy_form_saves_good_values(staff, demo):
    strategy = Strategy.objects.get(name="ibs_a")
    response = staff.post(reverse("admin:trading_strategy_change", args=[strategy.pk]),
                          strategy_form(strategy, max_bars_held="6"))
    assert response.status_code == 302
    assert Strategy.objects.get(pk=strategy.pk).max_bars_held == 6


def test_a_ticker_template_is_saved_and_names_each_orders_contract(staff, demo):
    strategy = Strategy.objects.get(name="ibs_a")
    leg = strategy.legs.order_by("pk").first()
    response = staff.post(reverse("admin:trading_strategy_change", args=[strategy.pk]),
                          strategy_form(strategy, **{"legs-0-ticker": "M{root}{month}{y}",
                                                     "legs-0-roll_policy": "hold"}))
    assert response.status_code == 302
    leg.refresh_from_db()
    root = leg.instrument.root
    assert (leg.ticker, leg.roll_policy) == ("M{root}{month}{y}", "hold")
    assert leg.broker_ticker(f"{root}H7", timezone.now()) == f"M{root}H7"


def test_killswitch_change_needs_a_reason_and_records_the_user(staff, demo):
    KillSwitch.objects.all().delete()  # (a database without the row: its page makes it, as the list does)
    url = reverse("admin:trading_killswitch_change", args=[1])
    refused = staff.post(url, {"mode": "halt", "reason": "  "})
    assert refused.status_code == 200 and KillSwitch.objects.get().mode == "off"
    assert "This field is required" in refused.content.decode() or "Give a reason" in refused.content.decode()
    done = staff.post(url, {"mode": "halt", "reason": "broker outage"})
    assert done.status_code == 302
    event = KillSwitchEvent.objects.get()
    assert (event.actor, event.mode, event.previous_mode, event.reason) == ("ops", "halt", "off", "broker outage")
    assert event.user.username == "ops"


def test_trades_are_read_only_and_export_as_csv(staff, demo):
    strategy = Strategy.objects.get(name="ibs_a")
    cl = strategy.legs.get(instrument__root="CL").instrument
    t0 = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    sig = Signal.objects.create(key="ibs_a:CL:x:buy", strategy=strategy, instrument=cl, bar_time=t0, action="buy",
                                quantity=1, signal_price=Decimal("70"), reason="entry")
    trade = Trade.objects.create(strategy=strategy, symbol="CL", contract="CLZ6", entry_time=t0, entry_price=Decimal("70"),
                                 entry_size=1, exit_time=t0 + timedelta(hours=2), exit_price=Decimal("70.7"), exit_size=1,
                                 pnl=Decimal("697.50"), pnl_percent=1.0, exit_reason="take_profit", commission=Decimal("2.50"),
                                 point_value=Decimal("1000"), session_date=t0.date(), entry_signal=sig)
    change_page = staff.get(reverse("admin:trading_trade_change", args=[trade.pk])).content.decode()
    assert 'name="_save"' not in change_page  # view only
    assert staff.get(reverse("admin:trading_trade_add")).status_code == 403
    listing = staff.get(reverse("admin:trading_trade_changelist") + "?symbol=CL").content.decode()
    export = re.search(r'<a href="([^"]+)" id="trade-export"', listing)[1]
    response = staff.get(html.unescape(export))
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["symbol"] == "CL" and rows[0]["pnl"] == "697.50" and rows[0]["exit_reason"] == "take_profit"
    assert rows[0]["entry_signal"] == "ibs_a:CL:x:buy"


def test_instrument_page_lists_the_contracts_with_expiration_front_and_next_roll(staff, demo):
    from datetime import datetime, timezone

    from trading.models import Contract, Instrument

    cl = Instrument.objects.get(root="CL")
    cl.active_contract, cl.roll_rule = "CLZ6", "calendar"
    cl.save()
    for raw, iid, expires in (("CLZ6", 1, datetime(2026, 11, 20, 19, 30, tzinfo=timezone.utc)),
                              ("CLF7", 2, datetime(2026, 12, 21, 19, 30, tzinfo=timezone.utc))):
        Contract.objects.create(instrument=cl, raw_symbol=raw, databento_id=iid, expiration=expires)
    page = staff.get(reverse("admin:trading_instrument_change", args=[cl.pk])).content.decode()
    assert "Listed contracts" in page and "CLZ6" in page and "CLF7" in page
    assert "Nov. 20, 2026" in page and "2026-11-13" in page  # its expiration; 5 business days before
    listing = staff.get(reverse("admin:trading_instrument_changelist")).content.decode()
    assert "2026-11-13" in listing  # the next roll, in the list too
    assert staff.get(reverse("admin:trading_contract_changelist")).status_code == 200

"""The trade list as an operator reads it: prices to the instrument's tick (more digits only for a fill
between ticks), P&L signed and coloured, percentages to 2 decimals, times labelled UTC, and the totals of
what the filters selected."""
import re
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command

from tests.trading.factories import make_trade
from trading.admin.trades import at_tick
from trading.models import Strategy, Trade

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("price, tick, shown", [
    (Decimal("70.250000000"), Decimal("0.01"), "70.25"), (Decimal("0.650050000"), Decimal("0.00005"), "0.65005"),
    (Decimal("5289.117500000"), Decimal("0.25"), "5,289.1175"), (Decimal("5289.000000000"), Decimal("0.25"), "5,289.00"),
    (Decimal("44000.000000000"), Decimal("1"), "44,000"), (None, Decimal("0.01"), "—"),
])
def test_a_price_is_shown_to_its_tick(price, tick, shown):
    assert at_tick(price, tick) == shown


def test_the_list_shows_ticks_signs_percentages_and_the_filtered_totals(admin_client, webhook_env):
    call_command("load_demo")
    ibs_a, ibs_b = Strategy.objects.get(name="ibs_a"), Strategy.objects.get(name="ibs_b")
    for pnl in ("250.00", "-90.50", "12.25"):
        make_trade(ibs_a, session_date=date(2026, 10, 14), pnl=Decimal(pnl))
    make_trade(ibs_b, session_date=date(2026, 10, 14), pnl=Decimal("-30.00"), root="SI")
    Trade.objects.filter(pnl=Decimal("12.25")).update(exit_price=Decimal("70.2675"), pnl_percent=0.38214285714285)
    page = admin_client.get("/admin/trading/trade/").content.decode()
    assert "Exit (UTC)" in page and "Entry (UTC)" in page
    prices = re.findall(r'<td class="field-exit">([^<]+)</td>', page)
    assert sorted(prices) == ["70.25", "70.25", "70.250", "70.2675"]  # CL's tick 0.01, SI's 0.005; a stop between ticks
    assert '<span class="neg">-90.50</span>' in page and '<span class="pos">+250.00</span>' in page
    assert "+0.38 %" in page and "0.38214285714285" not in page and ".000000000" not in page
    assert re.search(r'id="trade-totals" data-trades="4" data-pnl="141.75', page)
    only = admin_client.get(f"/admin/trading/trade/?strategy__id__exact={ibs_a.pk}").content.decode()
    assert re.search(r'id="trade-totals" data-trades="3" data-pnl="171.75', only)
    assert "3</strong> trades, <strong>2</strong> winners" in only


def test_the_signal_list_names_the_contract_and_why_an_entry_was_refused(admin_client, webhook_env):
    from datetime import datetime, timezone

    from trading.models import Signal, signal_key

    call_command("load_demo")
    ibs_a = Strategy.objects.get(name="ibs_a")
    cl = ibs_a.legs.get(instrument__root="CL").instrument
    at = datetime(2026, 10, 14, 15, tzinfo=timezone.utc)
    Signal.objects.create(key=signal_key("ibs_a", "CL", at, "buy"), strategy=ibs_a, instrument=cl, contract="CLZ6",
                          bar_time=at, action="buy", quantity=1, signal_price=Decimal("70"), reason="entry",
                          state="blocked", risk_control="killswitch", state_reason="killswitch: entries blocked " + "x" * 80)
    page = admin_client.get("/admin/trading/signal/").content.decode()
    assert '<td class="field-contract">CLZ6</td>' in page
    why = re.search(r'<td class="field-why">([^<]+)</td>', page)[1]
    assert why.startswith("killswitch (admin): killswitch: entries blocked x") and why.endswith("…") and len(why) < 90

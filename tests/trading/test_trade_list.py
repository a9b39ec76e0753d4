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


def test_the_list_has_no_row_checkbox_and_its_button_exports_what_the_filters_select(admin_client, webhook_env):
    import csv
    import html
    import io

    call_command("load_demo")
    ibs_a, ibs_b = Strategy.objects.get(name="ibs_a"), Strategy.objects.get(name="ibs_b")
    for pnl in ("250.00", "-90.50", "12.25"):
        make_trade(ibs_a, session_date=date(2026, 10, 14), pnl=Decimal(pnl))
    make_trade(ibs_a, session_date=date(2026, 10, 12), pnl=Decimal("5.00"))
    make_trade(ibs_b, session_date=date(2026, 10, 14), pnl=Decimal("-30.00"), root="SI")

    def export(query: str) -> list[dict]:
        page = admin_client.get(f"/admin/trading/trade/{query}").content.decode()
        assert 'name="_selected_action"' not in page and "action-checkbox" not in page  # no row checkboxes
        url = html.unescape(re.search(r'<a href="([^"]+)" id="trade-export"', page)[1])
        response = admin_client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "text/csv"
        return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    assert len(export("")) == 5
    only_a = export(f"?strategy__id__exact={ibs_a.pk}&session_date__gte=2026-10-13&session_date__lt=2026-10-15")
    assert sorted(r["pnl"] for r in only_a) == ["-90.50", "12.25", "250.00"]
    assert [r["symbol"] for r in export("?q=SI")] == ["SI"]
    assert [r["symbol"] for r in export("?symbol=SI&p=1")] == ["SI"]  # the page asked is not a filter
    assert export("?exit_reason=stop_loss") == []
    refused = admin_client.get("/admin/trading/trade/export/?no_such_field=1")
    assert refused.status_code == 302 and "e=1" in refused["Location"]


def test_the_totals_of_strategy_and_session_filters_come_from_the_daily_summary_and_equal_the_trades(
        admin_client, webhook_env):
    call_command("load_demo")
    ibs_a = Strategy.objects.get(name="ibs_a")
    for day, pnl in ((date(2026, 10, 12), "40.00"), (date(2026, 10, 13), "-15.50"), (date(2026, 10, 14), "7.25")):
        make_trade(ibs_a, session_date=day, pnl=Decimal(pnl))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    query = f"?strategy__id__exact={ibs_a.pk}&session_date__gte=2026-10-13&session_date__lt=2026-10-15"
    with CaptureQueriesContext(connection) as ctx:
        page = admin_client.get(f"/admin/trading/trade/{query}").content.decode()
    assert re.search(r'id="trade-totals" data-trades="2" data-pnl="-8.25', page)
    assert "1</strong> winners" in page
    assert any("trading_dailyriskstate" in q["sql"] and "SUM" in q["sql"] for q in ctx.captured_queries)
    # A filter the summary cannot answer (the exit reason) is summed over the trades themselves.
    page = admin_client.get(f"/admin/trading/trade/{query}&exit_reason=ibs_exit").content.decode()
    assert re.search(r'id="trade-totals" data-trades="2" data-pnl="-8.25', page)


def test_the_list_never_reads_every_trade_for_its_filters_or_its_count(admin_client, webhook_env):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call_command("load_demo")
    ibs_a = Strategy.objects.get(name="ibs_a")
    make_trade(ibs_a, session_date=date(2026, 10, 14), pnl=Decimal("1.00"))
    for query in ("", "?symbol=CL", f"?strategy__id__exact={ibs_a.pk}&p=1", "?_facets"):
        with CaptureQueriesContext(connection) as ctx:
            page = admin_client.get(f"/admin/trading/trade/{query}").content.decode()
        on_trades = [q["sql"] for q in ctx.captured_queries if '"trading_trade"' in q["sql"]]
        assert on_trades and not [q for q in on_trades if "DISTINCT" in q.upper()], query
        counts = [q for q in on_trades if "COUNT(" in q.upper() and "dailyriskstate" not in q]
        assert counts and all("LIMIT" in q.upper() for q in counts if "SUM(" not in q.upper()), counts
        assert "Show counts" not in page  # no count per filter choice either
    # The filters' choices: every instrument and every exit reason the books write, traded or not.
    assert re.search(r'href="\?[^"]*symbol=YM', page) and re.search(r'href="\?[^"]*exit_reason=flatten', page)


def test_the_paginator_counts_only_as_far_as_its_links_reach(webhook_env):
    from trading.admin.trade_list import PAGE_LINKS_AHEAD, ReachPaginator

    call_command("load_demo")
    ibs_a = Strategy.objects.get(name="ibs_a")
    for i in range(30):
        make_trade(ibs_a, session_date=date(2026, 10, 14), pnl=Decimal(i))
    every = list(Trade.objects.values_list("pk", flat=True))
    near = ReachPaginator(Trade.objects.all(), 2, page_asked=1)
    assert near.reach == (1 + PAGE_LINKS_AHEAD) * 2 and near.count == near.reach + 1 and near.more
    assert near.num_pages == PAGE_LINKS_AHEAD + 2  # the page after the last link is known to exist
    assert [t.pk for t in near.page(3).object_list] == every[4:6]  # the list's order, by keys first
    far = ReachPaginator(Trade.objects.all(), 2, page_asked=14)
    assert far.count == 30 and not far.more and far.num_pages == 15
    assert [t.pk for t in far.page(15).object_list] == every[28:30]


@pytest.mark.parametrize("price, tick", [
    (70.25, "0.01"), (0.65005, "0.00005"), (5289.1175, "0.25"), (5289.0, "0.25"), (44000.0, "1"), (70.1, "0.01"),
    (0.058, "0.000005"), (1.27, "0.0001"), (42902.5, "1"), (1e-05, "0.000001"), (1234567.0, "0.5"),
])
def test_a_float_price_is_shown_to_its_tick_as_a_decimal_one_is(price, tick):
    from trading.admin.markets import float_at_tick

    assert float_at_tick(price, Decimal(tick)) == at_tick(Decimal(repr(price)), Decimal(tick))


def test_the_export_is_refused_to_staff_without_the_trade_view_permission(client, webhook_env):
    """The export button's URL answers only to who may view trades: staff without the permission get 403 and no
    row, one granted `trading.view_trade` alone gets the CSV."""
    from django.contrib.auth.models import Permission, User

    call_command("load_demo")
    make_trade(Strategy.objects.get(name="ibs_a"), session_date=date(2026, 10, 14), pnl=Decimal("250.00"))
    clerk = User.objects.create_user("clerk", password="pw-clerk-123456", is_staff=True)
    client.force_login(clerk)
    refused = client.get("/admin/trading/trade/export/")
    assert refused.status_code == 403 and b"250.00" not in refused.content
    clerk.user_permissions.add(Permission.objects.get(codename="view_trade", content_type__app_label="trading"))
    allowed = client.get("/admin/trading/trade/export/")
    assert allowed.status_code == 200 and allowed["Content-Type"].startswith("text/csv")
    body = b"".join(allowed.streaming_content) if allowed.streaming else allowed.content
    assert b"250.00" in body

"""A signal's whole story in real headless Chromium: its page shows the bar it was decided on (OHLC and
IBS, as the bar store holds it), the features and the ML score against the threshold it was decided with
(not today's, which the operator has changed since), the risk decision, every
delivery attempt with the broker's answer, and the position and trade it opened; the trade links back."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.management import call_command

from tests.browser.conftest import log_in, screenshot
from trading.models import DeliveryAttempt, Position, Signal, StoredBar, Strategy, Trade, signal_key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
BAR = datetime(2026, 11, 4, 15, tzinfo=timezone.utc)


@pytest.fixture
def story(webhook_env):
    call_command("load_demo")
    ibs_a = Strategy.objects.get(name="ibs_a")
    leg = ibs_a.legs.get(instrument__root="CL")
    leg.ml_threshold = 0.70  # changed since the decision, which was made at 0.55
    leg.save()
    StoredBar.objects.create(root="CL", timeframe="1h", ts=BAR, contract="CLZ6", open=71.2, high=71.5, low=70.5,
                             close=70.6, volume=900, trades=300, source="hub")
    entry = Signal.objects.create(key=signal_key("ibs_a", "CL", BAR, "buy"), strategy=ibs_a, instrument=leg.instrument,
                                  contract="CLZ6", bar_time=BAR, action="buy", quantity=1, signal_price=Decimal("70.6"),
                                  reason="entry", ibs=0.1, ml_score=0.6123, ml_threshold=0.55, state="sent",
                                  features={"CL_ibs": 0.1, "CL_ret_1": -0.0123, "GC_ibs": None},
                                  payload={"ticker": "CLZ6"})
    DeliveryAttempt.objects.create(signal=entry, number=1, attempted_at=BAR + timedelta(hours=1), outcome="retryable",
                                   status_code=503, response="busy")
    DeliveryAttempt.objects.create(signal=entry, number=2, attempted_at=BAR + timedelta(hours=1, seconds=4),
                                   outcome="delivered", status_code=200, response='{"success": true}')
    exit_bar = BAR + timedelta(hours=3)
    out = Signal.objects.create(key=signal_key("ibs_a", "CL", exit_bar, "exit"), strategy=ibs_a,
                                instrument=leg.instrument, contract="CLZ6", bar_time=exit_bar, action="exit", quantity=1,
                                signal_price=Decimal("71.4"), reason="ibs_exit", state="sent", payload={})
    pos = Position.objects.create(strategy=ibs_a, instrument=leg.instrument, contract="CLZ6", size=1, filled=True,
                                  signal_time=BAR, entry_time=BAR + timedelta(hours=1), entry_price=Decimal("70.65"),
                                  entry_signal=entry, exit_signal=out, state="closed", point_value=Decimal("1000"),
                                  commission_per_side=Decimal("1.25"), ml_score=0.6123)
    trade = Trade.objects.create(strategy=ibs_a, symbol="CL", contract="CLZ6", entry_time=pos.entry_time,
                                 entry_price=Decimal("70.65"), entry_size=1, exit_time=exit_bar + timedelta(hours=1),
                                 exit_price=Decimal("71.4"), exit_size=1, pnl=Decimal("747.50"), pnl_percent=1.06,
                                 exit_reason="ibs_exit", commission=Decimal("2.50"), point_value=Decimal("1000"),
                                 session_date=BAR.date(), entry_signal=entry, exit_signal=out)
    return entry, pos, trade


def test_a_signals_page_tells_its_whole_story_and_the_trade_links_back(page, live_server, django_user_model, story):
    entry, pos, trade = story
    log_in(page, live_server, django_user_model, next_path=f"/admin/trading/signal/{entry.pk}/change/",
           ready=".decision-bar")
    bar = StoredBar.objects.get(root="CL", ts=BAR)
    shown = page.locator(".decision-bar")
    assert [float(shown.get_attribute(f"data-{k}")) for k in ("open", "high", "low", "close")] == \
        [bar.open, bar.high, bar.low, bar.close]
    assert float(shown.get_attribute("data-ibs")) == pytest.approx((bar.close - bar.low) / (bar.high - bar.low), abs=1e-4)
    body = page.inner_text("#content")
    assert "score 0.6123 ≥ threshold 0.55 (when decided): passed" in body
    ml = page.locator(".ml-filter")
    assert (float(ml.get_attribute("data-score")), float(ml.get_attribute("data-threshold"))) == \
        (entry.ml_score, entry.ml_threshold)
    features = {r.locator("th").inner_text(): r.locator("td").inner_text()
                for r in page.locator("table.ml-features tr").all()}
    assert features == {"CL_ibs": "0.1", "CL_ret_1": "-0.0123", "GC_ibs": "—"}
    assert "no control refused or held it" in body
    attempts = page.locator("tr.form-row, tbody tr").filter(has_text="retryable")
    assert attempts.count() >= 1 and "503" in attempts.first.inner_text() and "busy" in body
    assert '{"success": true}' in body
    screenshot(page, "signal-story")
    page.click(f"text=trade CL {trade.pnl:+.2f} $")
    page.wait_for_selector("text=entry order")
    assert f"/admin/trading/trade/{trade.pk}/change/" in page.url
    page.click(f"text={entry.key}")
    page.wait_for_selector(".decision-bar")
    assert f"/admin/trading/signal/{entry.pk}/change/" in page.url
    assert f"opened: {pos}" in page.inner_text("#content")

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from strategies.calendar import session_date
from trading.models import KillSwitch, KillSwitchEvent, Position, Signal, Strategy, Trade
from trading.redis_client import get_redis, key
from trading.risk.daily import record_realized

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_trading(webhook_env, settings, redis_prefix):
    """Demo strategies with two closed trades today and one open CL position priced by the hub."""
    settings.REDIS_PREFIX = redis_prefix
    call_command("load_demo")
    strategy = Strategy.objects.get(name="ibs_a")
    cl = strategy.legs.get(instrument__root="CL").instrument
    now = timezone.now().replace(second=0, microsecond=0)
    today = session_date(now)
    for i, pnl in enumerate([Decimal("250.00"), Decimal("-90.50")]):
        sig = Signal.objects.create(key=f"t{i}", strategy=strategy, instrument=cl, bar_time=now - timedelta(hours=5 + i),
                                    action="buy", quantity=1, signal_price=Decimal("70"), reason="entry")
        Trade.objects.create(strategy=strategy, symbol="CL", entry_time=now - timedelta(hours=4), entry_price=Decimal("70"),
                             entry_size=1, exit_time=now - timedelta(hours=1), exit_price=Decimal("70.25"), exit_size=1,
                             pnl=pnl, pnl_percent=0.3, exit_reason="ibs_exit", commission=Decimal("2.5"),
                             point_value=Decimal("1000"), session_date=today, entry_signal=sig)
        record_realized(strategy, today, pnl)  # the daily summary, as a booked exit keeps it
    sig = Signal.objects.create(key="open", strategy=strategy, instrument=cl, bar_time=now - timedelta(hours=2),
                                action="buy", quantity=2, signal_price=Decimal("71"), reason="entry")
    Position.objects.create(strategy=strategy, instrument=cl, contract="CLF7", size=2, entry_time=now - timedelta(hours=1), signal_time=now - timedelta(hours=2), filled=True,
                            entry_price=Decimal("71.00"), commission_per_side=Decimal("1.25"),
                            point_value=Decimal("1000"), entry_signal=sig)
    get_redis().set(key("last", "CL"), json.dumps({"close": 71.5, "ts": now.isoformat()}))
    return strategy


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", password="x-test-only"))
    return client


def test_dashboard_requires_login(client, demo_trading):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_dashboard_shows_todays_pnl_unrealised_and_chart(staff, demo_trading):
    page = staff.get("/admin/dashboard/").content.decode()
    assert "159.50" in page  # 250.00 - 90.50 today
    assert "1000.00" in page  # (71.5 - 71.0) × 1000 × 2 unrealised
    assert "<svg" in page and "polyline" in page
    assert 'id="killswitch-control"' in page


def test_dashboard_killswitch_needs_confirmation_and_reason(staff, demo_trading):
    refused = staff.post("/admin/dashboard/", {"mode": "halt", "reason": "storm"})
    assert refused.status_code == 200 and KillSwitch.objects.get().mode == "off"
    done = staff.post("/admin/dashboard/", {"mode": "halt", "reason": "storm", "confirm": "on"})
    assert done.status_code == 302 and KillSwitch.objects.get().mode == "halt"
    assert KillSwitchEvent.objects.get().actor == "ops"


def test_dashboard_without_redis_says_prices_are_unavailable(staff, demo_trading, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    page = staff.get("/admin/dashboard/?partial=1").content.decode()
    assert "Last prices unavailable" in page and "159.50" in page


def test_recent_alerts_show_every_kind_and_filter_by_kind(staff, demo_trading):
    from trading.delivery.alerts import enqueue

    for kind in ("startup", "entry", "exit", "summary", "emergency", "info"):
        enqueue(kind, f"{kind} alert for the dashboard")
    page = staff.get("/admin/dashboard/").content.decode()
    for kind in ("startup", "entry", "exit", "summary", "emergency", "info"):
        assert f'data-kind="{kind}"' in page and f"{kind} alert for the dashboard" in page
    only = staff.get("/admin/dashboard/?kind=exit&partial=1").content.decode()
    assert "exit alert for the dashboard" in only and "entry alert for the dashboard" not in only
    assert set(re.findall(r'<li class="alert" data-kind="(\w+)"', only)) == {"exit"}
    garbage = staff.get("/admin/dashboard/?kind=<script>").content.decode()  # not a kind: every kind, nothing echoed
    assert "entry alert for the dashboard" in garbage and "<script>" not in garbage.split("Recent alerts")[1][:2000]

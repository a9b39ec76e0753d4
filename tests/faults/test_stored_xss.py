"""Names that are markup stay text: a strategy named `<script>…` (or with quotes and `&`) written by the
ORM, by `loaddata` or tried through the admin form is shown as text on the dashboard and in its chart —
checked in the HTML here, and in real headless Chromium (tests/browser/test_hostile_names_browser.py)."""
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from strategies.calendar import session_date
from tests.trading.factories import make_trade
from trading.models import Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db(transaction=True)
HOSTILE = ['<script>alert(1)</script>', 'a"b&c<img src=x onerror=alert(2)>', "x' onmouseover='alert(3)"]


@pytest.fixture
def demo(webhook_env, settings, redis_prefix):
    settings.REDIS_PREFIX = redis_prefix
    call_command("load_demo", verbosity=0)
    return Strategy.objects.get(name="ibs_a")


def hostile_strategy(name: str, template: Strategy) -> Strategy:
    """A strategy the ORM writes without the form's validators, with a leg and a trade (so it is charted)."""
    s = Strategy.objects.create(name=name, broker_webhook=template.broker_webhook, enabled=False)
    leg = template.legs.get(instrument__root="CL")
    StrategyInstrument.objects.create(strategy=s, instrument=leg.instrument, commission_per_side=Decimal("1.25"))
    make_trade(s, session_date=session_date(timezone.now()) - timedelta(days=1), pnl=Decimal("12.5"))
    return s


def dashboard_html(django_user_model) -> str:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser(f"ops{Strategy.objects.count()}", password="pw"))
    response = client.get(reverse("admin:dashboard"))
    assert response.status_code == 200
    return response.content.decode()


def assert_shown_as_text(html: str, name: str):
    assert name not in html and "<script>alert" not in html and "<img src=x" not in html
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped.replace('"', "&quot;").replace("'", "&#x27;") in html


@pytest.mark.parametrize("name", HOSTILE)
def test_a_name_written_by_the_orm_is_text_in_the_dashboard_and_its_chart(demo, django_user_model, name):
    hostile_strategy(name, demo)
    html = dashboard_html(django_user_model)
    assert_shown_as_text(html, name)
    chart = html[html.index('<svg xmlns="http://www.w3.org/2000/svg" class="chart line-chart equity equity-chart"'):]
    chart = chart[:chart.index("</svg>")]
    assert "&lt;" in chart or "&quot;" in chart or "&#x27;" in chart  # the legend holds the escaped name


def test_a_name_loaded_from_a_fixture_is_text_too(demo, django_user_model, tmp_path):
    fixture = tmp_path / "hostile.json"
    fixture.write_text(json.dumps([{"model": "trading.strategy", "pk": 900, "fields": {
        "name": HOSTILE[0], "broker_webhook": demo.broker_webhook, "enabled": False,
        "updated_at": "2026-11-02T00:00:00Z"}}]))
    call_command("loaddata", str(fixture), verbosity=0)
    assert_shown_as_text(dashboard_html(django_user_model), HOSTILE[0])


def test_the_admin_form_refuses_such_a_name(demo, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("ops", password="pw"))
    count = Strategy.objects.count()
    response = client.post(reverse("admin:trading_strategy_add"), {
        "name": HOSTILE[0], "broker_webhook": demo.broker_webhook, "max_positions": 1, "daily_stop_loss": 10,
        "heartbeat_interval": 30, "time_in_force": "day", "timeframe": "1h", "legs-TOTAL_FORMS": 0,
        "legs-INITIAL_FORMS": 0, "legs-MIN_NUM_FORMS": 0, "legs-MAX_NUM_FORMS": 1000})
    assert response.status_code == 200 and "name" in response.context["adminform"].form.errors
    assert Strategy.objects.count() == count
    assert HOSTILE[0] not in response.content.decode()

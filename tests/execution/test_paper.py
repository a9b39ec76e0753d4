"""Paper strategies: the same outbox, but every order goes to the built-in paper broker; none can reach a
webhook, whatever the strategy's webhook field says; switching between live and paper needs a flat book."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from trading.execution.outbox import send_pending_orders
from trading.execution.paper import fill_of
from trading.models import DeliveryAttempt, Notification, PaperOrder, Position, Signal, Strategy, signal_key
from trading.delivery.alerts import enqueue

pytestmark = pytest.mark.django_db


class NeverCalled:
    def __init__(self):
        self.calls = []

    def __call__(self, url, payload, timeout):
        self.calls.append(url)
        raise AssertionError("a paper order went to the webhook")


@pytest.fixture
def paper(webhook_env):
    call_command("load_demo")
    strategy = Strategy.objects.get(name="ibs_a")
    strategy.mode = Strategy.Mode.PAPER
    strategy.full_clean()
    strategy.save()
    return strategy


def order(strategy, root="CL", action="buy", hours=1):
    leg = strategy.legs.get(instrument__root=root)
    bar = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    return Signal.objects.create(
        key=signal_key(strategy.name, root, bar, action), strategy=strategy, instrument=leg.instrument, bar_time=bar,
        action=action, quantity=1, signal_price=Decimal("71.25"), reason="entry",
        payload={"ticker": f"{root}Z6", "action": action, "quantity": 1, "orderType": "market",
                 "extras": {"signal_id": signal_key(strategy.name, root, bar, action)}})


def test_a_paper_order_goes_to_the_paper_broker_never_to_the_webhook(paper):
    sig = order(paper)
    webhook = NeverCalled()
    report = send_pending_orders(deliver=webhook)
    assert report.sent == [sig.key] and webhook.calls == []
    taken = PaperOrder.objects.get()
    assert taken.signal_id == sig.pk and taken.payload == sig.payload
    (attempt,) = DeliveryAttempt.objects.filter(signal=sig)
    assert (attempt.outcome, attempt.status_code, attempt.response) == ("delivered", 200, "paper broker: order taken")
    sig.refresh_from_db()
    assert sig.state == "sent" and sig.attempts == 1
    assert fill_of(taken) is None  # filled by the books at the next bar's open, as the backtest fills it
    for _ in range(2):  # delivered once: never again
        send_pending_orders(deliver=webhook, now=timezone.now() + timedelta(minutes=5))
    assert PaperOrder.objects.count() == 1 and webhook.calls == []


def test_a_paper_strategy_needs_no_webhook_a_live_one_does(paper):
    paper.broker_webhook = ""
    paper.full_clean()  # no error: paper needs no URL
    paper.save()
    sig = order(paper, "GC")
    assert send_pending_orders(deliver=NeverCalled()).sent == [sig.key]
    paper.mode = Strategy.Mode.LIVE
    with pytest.raises(ValidationError) as err:
        paper.full_clean()
    assert "a live strategy needs its TradersPost webhook" in str(err.value.message_dict["broker_webhook"])


def test_switching_mode_with_a_position_open_is_refused(paper):
    sig = order(paper)
    Signal.objects.filter(pk=sig.pk).update(state="sent")
    now = timezone.now()
    Position.objects.create(strategy=paper, instrument=sig.instrument, contract="CLZ6", size=1, filled=True,
                            signal_time=now, entry_time=now, entry_price=Decimal("70"), entry_signal=sig,
                            point_value=Decimal("1000"), commission_per_side=Decimal("1.25"))
    taken = PaperOrder.objects.create(signal=sig, received_at=now, payload=sig.payload)
    assert fill_of(taken) == (now, Decimal("70"))  # the paper order's fill is the books' modelled fill
    paper.mode = Strategy.Mode.LIVE
    with pytest.raises(ValidationError) as err:
        paper.full_clean()
    assert "positions are open" in str(err.value.message_dict["mode"])


def test_paper_is_named_on_every_screen_and_in_every_alert(paper):
    assert str(paper) == "ibs_a (paper)" and str(Strategy.objects.get(name="ibs_b")) == "ibs_b"
    enqueue("entry", "ibs_a: buy 1 CL", strategy=paper)
    enqueue("entry", "ibs_b: buy 1 SI", strategy=Strategy.objects.get(name="ibs_b"))
    assert sorted(Notification.objects.values_list("title", flat=True)) == ["[paper] ibs_a: buy 1 CL",
                                                                            "ibs_b: buy 1 SI"]


def test_the_admin_lists_paper_orders_with_their_fills_and_marks_the_strategy(paper, admin_client):
    from django.urls import reverse

    sig = order(paper)
    send_pending_orders(deliver=NeverCalled())
    listing = admin_client.get(reverse("admin:trading_paperorder_changelist")).content.decode()
    assert sig.key in listing and "ibs_a (paper)" in listing and "CLZ6" in listing and "not filled yet" in listing
    Signal.objects.filter(pk=sig.pk).update(state="sent")
    Position.objects.create(strategy=paper, instrument=sig.instrument, contract="CLZ6", size=1, filled=True,
                            signal_time=sig.bar_time, entry_time=sig.bar_time + timedelta(hours=1),
                            entry_price=Decimal("71.3"), entry_signal=sig, point_value=Decimal("1000"),
                            commission_per_side=Decimal("1.25"))
    listing = admin_client.get(reverse("admin:trading_paperorder_changelist")).content.decode()
    assert f"71.300000000 at {sig.bar_time + timedelta(hours=1):%Y-%m-%d %H:%M} UTC" in listing
    strategies = admin_client.get(reverse("admin:trading_strategy_changelist") + "?mode__exact=paper").content.decode()
    assert "ibs_a (paper)" in strategies and "ibs_b" not in strategies
    # the books keep paper apart: each list filters by mode, and the dashboard names the paper strategy
    def results(model, mode):  # the list itself, without the filter sidebar (which names every strategy)
        page = admin_client.get(reverse(f"admin:trading_{model}_changelist") + f"?strategy__mode__exact={mode}")
        return page.content.decode().split('id="changelist-filter"')[0]

    assert "ibs_a (paper)" in results("position", "paper") and "ibs_a (paper)" not in results("position", "live")
    assert sig.key in results("signal", "paper") and sig.key not in results("signal", "live")
    assert results("trade", "live").count("ibs_a") == 0  # (no trade yet: the position is open)
    dashboard = admin_client.get("/admin/dashboard/").content.decode()
    assert "<td>ibs_a (paper)</td>" in dashboard

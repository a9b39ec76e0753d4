"""Disabling is never abandoning: a leg (or a whole strategy) disabled while it holds a position keeps a
worker managing that exit — across restarts and a Redis restart — takes no entry for it, counts it
against max_positions, and the admin says so; a leg holding a position cannot be removed; and a
position whose manager is gone raises an emergency once and shows as unmanaged."""
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.adminforms import form_data
from tests.desk import EXIT, MID, SIGNAL, T0, demo_desk, publish_hours, running_worker
from tests.e2e.appliance import RedisServer
from trading import supervisor
from trading.health.heartbeat import beat
from trading.health.monitor import check_heartbeats
from trading.models import Notification, Position, Signal, Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db(transaction=True)
H = timedelta(hours=1)
GC_SIGNAL = (2000.0, 2010.0, 1990.0, 1992.0)  # IBS 0.1 for GC too
QUIET_SIGNAL = (100.0, 100.5, 99.5, 99.55)  # IBS 0.05, well inside the held position's stop and target


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env):
    strategy = demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, roots=("CL", "GC"))
    Strategy.objects.filter(pk=strategy.pk).update(max_positions=1)
    return strategy


def open_cl(w):
    publish_hours([SIGNAL, MID], root="CL")
    w.poll()
    return Position.objects.get(instrument__root="CL", state="open")


def test_a_leg_disabled_mid_position_survives_restarts_and_a_redis_restart_and_exits_once(desk, broker, settings,
                                                                                         tmp_path):
    redis_server = RedisServer(tmp_path).start()
    settings.REDIS_URL = redis_server.url
    try:
        w = running_worker()
        pos = open_cl(w)
        StrategyInstrument.objects.filter(strategy=desk, instrument__root="CL").update(enabled=False)
        for _ in range(3):  # three restarts: each rebuilds from the database
            w.release_lock()
            w = running_worker()
            assert w.config.legs["CL"].exits_only and w.portfolio.books["CL"].position is not None
        redis_server.stop()  # a Redis blip: the worker's step fails and it rebuilds once Redis is back
        with pytest.raises(Exception):
            w.poll()
        redis_server.start()
        w.hours.buffer.clear()
        w.setup()
        publish_hours([MID], start=T0 + 2 * H, root="CL")
        publish_hours([GC_SIGNAL, MID], start=T0 + 2 * H, root="GC")  # a GC entry: max_positions 1 is taken by CL
        w.poll()
        gc = Signal.objects.get(instrument__root="GC", action="buy")
        assert (gc.state, gc.risk_control) == ("blocked", "max_positions")
        publish_hours([EXIT, MID], start=T0 + 4 * H, root="CL")  # its exit bar comes
        publish_hours([QUIET_SIGNAL, MID], start=T0 + 6 * H, root="CL")  # then an entry candidate on the disabled leg
        w.poll()
        exits = [o for o in broker.orders() if o["action"] == "exit"]
        assert [o["extras"]["bar_time"][:13] for o in exits] == [(T0 + 4 * H).isoformat()[:13]]  # sent once
        assert Position.objects.get(pk=pos.pk).state == "closed"
        blocked = Signal.objects.get(instrument__root="CL", action="buy", bar_time=T0 + 6 * H)
        assert (blocked.state, blocked.risk_control) == ("blocked", "disabled")
    finally:
        redis_server.stop()


def test_a_disabled_strategy_keeps_its_worker_until_it_is_flat(desk, broker):
    w = running_worker()
    open_cl(w)
    Strategy.objects.filter(pk=desk.pk).update(enabled=False)
    assert "ibs_a" in supervisor.enabled_strategy_names()  # its worker program stays
    w.release_lock()
    w = running_worker()  # and starts, exits only
    assert all(leg.exits_only for leg in w.config.legs.values()) and list(w.config.legs) == ["CL"]
    publish_hours([EXIT, MID], start=T0 + 2 * H, root="CL")
    w.poll()
    assert [o["action"] for o in broker.orders()] == ["buy", "exit"]
    assert "ibs_a" not in supervisor.enabled_strategy_names()  # flat: its program goes


def test_the_admin_says_what_disabling_does_and_refuses_removing_a_leg_with_a_position(desk, broker,
                                                                                      django_user_model):
    w = running_worker()
    open_cl(w)
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("ops", password="pw-disable"))
    url = reverse("admin:trading_strategy_change", args=[desk.pk])
    data = form_data(client, url, "strategy_form")
    index = next(k.split("-")[1] for k, v in data.items() if k.endswith("-instrument") and
                 str(v) == str(Position.objects.get().instrument_id))
    removed = client.post(url, {**data, f"legs-{index}-DELETE": "on", "_save": "Save"})
    assert removed.status_code == 200 and "holds an open position: it cannot be removed" in removed.content.decode()
    assert StrategyInstrument.objects.filter(strategy=desk, instrument__root="CL").exists()
    data = form_data(client, url, "strategy_form")
    data.pop(f"legs-{index}-enabled", None)
    done = client.post(url, {**data, "_save": "Save"}, follow=True)
    assert any("CL disabled with a position open: its exit is still managed" in str(m)
               for m in get_messages(done.wsgi_request)) or "its exit is still managed" in done.content.decode()
    leg = StrategyInstrument.objects.get(strategy=desk, instrument__root="CL")
    assert not leg.enabled
    own_page = client.post(reverse("admin:trading_strategyinstrument_delete", args=[leg.pk]), {"post": "yes"})
    assert own_page.status_code == 403 and StrategyInstrument.objects.filter(pk=leg.pk).exists()


def test_a_position_whose_worker_is_gone_is_alerted_once_and_shown_unmanaged(desk, broker, django_user_model):
    w = running_worker()
    open_cl(w)
    now = timezone.now() - timedelta(minutes=10)
    beat("worker:ibs_a", state="running", interval=30, now=now)
    assert check_heartbeats(now=now)["unmanaged"] == []
    later = now + timedelta(minutes=10)  # the worker died (no "stopped"): its beats just ended
    assert check_heartbeats(now=later)["unmanaged"] == ["ibs_a:CL"]
    assert check_heartbeats(now=later + timedelta(minutes=1))["unmanaged"] == []  # once
    assert Notification.objects.filter(kind="emergency", title="Unmanaged position: ibs_a CL").count() == 1
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("ops", password="pw-unmanaged"))
    assert "UNMANAGED (no ibs_a worker)" in client.get(reverse("admin:dashboard")).content.decode()

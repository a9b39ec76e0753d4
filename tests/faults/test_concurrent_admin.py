"""Two admins editing the same configuration: the second save over a form opened before the first is
refused with who changed what since, and nothing the first saved reverts — strategies, instruments and
legs (on their own page and inline in the strategy's form), one after the other and at the same moment."""
import json
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.adminforms import form_data, page_errors
from tests.e2e.appliance import ROOT, ProcessEnv
from trading.models import ConfigRevision, Instrument, Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admins(webhook_env, settings, redis_prefix, django_user_model):
    settings.REDIS_PREFIX = redis_prefix
    call_command("load_demo", verbosity=0)
    out = {}
    for name in ("alice", "bob"):
        client = Client()
        client.force_login(django_user_model.objects.create_superuser(name, password=f"pw-{name}"))
        out[name] = client
    return out


def save(client, url, data, **changes):
    return client.post(url, {**data, **changes, "_save": "Save"})


def refused_with(response) -> str:
    assert response.status_code == 200, response.status_code
    errors, _ = page_errors(response)
    (message,) = errors["__all__"]
    return message


def test_the_second_of_two_strategy_saves_is_refused_naming_who_changed_what(admins):
    strategy = Strategy.objects.get(name="ibs_a")
    url = reverse("admin:trading_strategy_change", args=[strategy.pk])
    a, b = form_data(admins["alice"], url, "strategy_form"), form_data(admins["bob"], url, "strategy_form")
    assert save(admins["alice"], url, a, max_positions="1").status_code == 302
    message = refused_with(save(admins["bob"], url, b, daily_stop_loss="123"))
    assert "changed since you opened it (version 1 → 2)" in message and "by alice at" in message
    assert "Max positions" in message and "nothing you typed was applied" in message
    now = Strategy.objects.get(pk=strategy.pk)
    assert (now.max_positions, now.daily_stop_loss, now.version) == (1, Decimal("2000.00"), 2)  # nothing reverted
    again = form_data(admins["bob"], url, "strategy_form")  # bob reloads and applies his change again
    assert save(admins["bob"], url, again, daily_stop_loss="123").status_code == 302
    now = Strategy.objects.get(pk=strategy.pk)
    assert (now.max_positions, now.daily_stop_loss, now.version) == (1, Decimal("123.00"), 3)
    assert list(ConfigRevision.objects.filter(model="strategy").order_by("version").values_list(
        "version", "user", "fields")) == [(2, "alice", ["Max positions"]), (3, "bob", ["Daily stop loss"])]


def test_a_leg_changed_inline_then_on_its_own_page_is_refused_there(admins):
    strategy = Strategy.objects.get(name="ibs_a")
    leg = StrategyInstrument.objects.get(strategy=strategy, instrument__root="CL")
    strategy_url = reverse("admin:trading_strategy_change", args=[strategy.pk])
    leg_url = reverse("admin:trading_strategyinstrument_change", args=[leg.pk])
    stale_leg = form_data(admins["bob"], leg_url, "strategyinstrument_form")
    inline = form_data(admins["alice"], strategy_url, "strategy_form")
    index = next(k.split("-")[1] for k, v in inline.items() if k.endswith("-id") and str(v) == str(leg.pk))
    assert save(admins["alice"], strategy_url, inline, **{f"legs-{index}-size": "3"}).status_code == 302
    message = refused_with(save(admins["bob"], leg_url, stale_leg, commission_per_side="9.99"))
    assert "by alice" in message and "Size" in message
    leg.refresh_from_db()
    assert (leg.size, leg.commission_per_side) == (3, Decimal("4.5") if leg.instrument.root in ("6A", "6C")
                                                   else Decimal("1.25"))


def test_an_instrument_saved_twice_from_stale_forms_keeps_the_first(admins):
    cl = Instrument.objects.get(root="CL")
    url = reverse("admin:trading_instrument_change", args=[cl.pk])
    a, b = form_data(admins["alice"], url, "instrument_form"), form_data(admins["bob"], url, "instrument_form")
    assert save(admins["alice"], url, a, roll_days_before_expiry="3").status_code == 302
    assert "by alice" in refused_with(save(admins["bob"], url, b, name="Crude (edited)"))
    cl.refresh_from_db()
    assert (cl.roll_days_before_expiry, cl.name) == (3, "Crude oil")


SAVE_AT = """
import json, time
from django.contrib.auth import get_user_model
from django.test import Client
from tests.adminforms import form_data
from trading.models import Strategy
user = get_user_model().objects.get_or_create(username={name!r}, defaults={{'is_staff': True, 'is_superuser': True}})[0]
client = Client(HTTP_HOST='127.0.0.1')
client.force_login(user)
url = '/admin/trading/strategy/%d/change/' % Strategy.objects.get(name='ibs_a').pk
data = form_data(client, url, 'strategy_form')
open({ready!r}, 'w').close()
while time.time() < {at!r}:
    time.sleep(0.001)
print(json.dumps(client.post(url, {{**data, **{change!r}, '_save': 'Save'}}).status_code))
"""


def test_two_saves_at_the_same_moment_one_wins_the_other_is_refused(tmp_path):
    """Two processes (as two gunicorn workers would), each with the form open, post at the same instant."""
    env = ProcessEnv(tmp_path, {"DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/unused",
                                "TRADERSPOST_IBS_A_WEBHOOK": "http://127.0.0.1:9/trading/webhook/a-unused",
                                "TRADERSPOST_IBS_B_WEBHOOK": "http://127.0.0.1:9/trading/webhook/b-unused"})
    try:
        env.migrate_with_demo()
        at = time.time() + 15
        changes = {"alice": {"max_positions": "1"}, "bob": {"daily_stop_loss": "123"}}
        procs = {name: subprocess.Popen([sys.executable, "manage.py", "shell", "-c", SAVE_AT.format(
            name=name, ready=str(tmp_path / f"{name}.ready"), at=at, change=change)], cwd=ROOT, env=env.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name, change in changes.items()}
        results = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
            assert (tmp_path / f"{name}.ready").exists()
            results[name] = json.loads(out.strip().splitlines()[-1])
        state = env.shell_json("import json; from trading.models import ConfigRevision, Strategy\n"
                               "s = Strategy.objects.get(name='ibs_a')\n"
                               "print(json.dumps([s.version, s.max_positions, str(s.daily_stop_loss),"
                               " list(ConfigRevision.objects.values_list('user', flat=True))]))")
    finally:
        env.cleanup()
    assert sorted(results.values()) == [200, 302], results
    winner = next(n for n, code in results.items() if code == 302)
    version, max_positions, stop, revisions = state
    assert version == 2 and revisions == [winner]
    assert (max_positions, stop) == ((1, "2000.00") if winner == "alice" else (2, "123.00"))

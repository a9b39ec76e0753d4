"""Who may change the killswitch, and who may see the P&L: checked on every URL for each level of user."""
import logging

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.urlwalk import PUBLIC_BY_DESIGN, all_urls, refused
from trading.models import KillSwitch, KillSwitchEvent, Strategy

pytestmark = pytest.mark.django_db
DASHBOARD = "/admin/dashboard/"
KILLSWITCH_FORM = {"mode": "halt", "reason": "walk", "confirm": "on"}


def perms(*codenames):
    return [Permission.objects.get(content_type__app_label="trading", codename=c) for c in codenames]


@pytest.fixture
def users(db, django_user_model, webhook_env, settings, redis_prefix):
    settings.REDIS_PREFIX = redis_prefix
    call_command("load_demo", verbosity=0)
    KillSwitch.objects.get_or_create(pk=1)
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-only", is_staff=True)
    viewer.user_permissions.set(perms("view_trade"))
    trader = django_user_model.objects.create_user("trader", password="pw-trader", is_staff=True)
    trader.user_permissions.set(perms("view_trade", "view_position", "view_killswitch", "change_killswitch",
                                      "view_signal", "view_strategy"))
    boss = django_user_model.objects.create_superuser("boss", password="pw-boss")
    return {"anonymous": None, "view-only staff": viewer, "trading staff": trader, "superuser": boss}


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_view_only_staff_posting_the_dashboard_killswitch_gets_403_mode_unchanged_and_logged(users, caplog):
    client = client_for(users["view-only staff"])
    with caplog.at_level(logging.WARNING, logger="trading.admin.dashboard"):
        response = client.post(DASHBOARD, KILLSWITCH_FORM)
    assert response.status_code == 403
    assert KillSwitch.objects.get(pk=1).mode == "off" and not KillSwitchEvent.objects.exists()
    assert "killswitch change refused user=viewer mode='halt'" in caplog.text


def test_view_only_staff_cannot_change_the_killswitch_on_its_admin_page_either(users, caplog):
    client = client_for(users["view-only staff"])
    with caplog.at_level(logging.WARNING, logger="trading.admin.risk"):
        response = client.post(reverse("admin:trading_killswitch_change", args=[1]), {"mode": "halt", "reason": "x"})
    assert response.status_code == 403 and KillSwitch.objects.get(pk=1).mode == "off"
    assert "killswitch change refused user=viewer" in caplog.text


def test_trading_staff_changes_the_killswitch_from_the_dashboard(users):
    client = client_for(users["trading staff"])
    page = client.get(DASHBOARD)
    assert page.status_code == 200 and b'name="apply"' in page.content
    response = client.post(DASHBOARD, KILLSWITCH_FORM)
    assert response.status_code == 302 and KillSwitch.objects.get(pk=1).mode == "halt"
    assert KillSwitchEvent.objects.get().actor == "trader"


def test_the_dashboard_needs_view_permission_on_trades_and_positions(users):
    assert client_for(users["view-only staff"]).get(DASHBOARD).status_code == 403  # trades but not positions
    viewer = users["view-only staff"]
    viewer.user_permissions.add(*perms("view_position"))
    page = client_for(viewer).get(DASHBOARD)
    assert page.status_code == 200
    assert b'name="apply"' not in page.content and b'id="killswitch-readonly"' in page.content


@pytest.mark.parametrize("level", ["anonymous", "view-only staff", "trading staff", "superuser"])
def test_every_url_answers_each_permission_level_as_its_permissions_say(users, level):
    """GET every URL of the project as this user; then POST the killswitch form at every URL. Only a
    user holding trading.change_killswitch ever changes the mode; nothing answers 500."""
    user = users[level]
    client = client_for(user)
    strategy = Strategy.objects.get(name="ibs_a")
    samples = {"object_id": str(strategy.pk), "pk": str(strategy.pk),
               "content_type_id": str(ContentType.objects.get_for_model(Strategy).pk)}
    may_switch = user is not None and user.has_perm("trading.change_killswitch")
    answered = {}
    for spelled, url in all_urls(samples):
        got = client.get(url)
        assert got.status_code != 500, (level, url)
        answered[spelled] = got.status_code
        if user is None:
            assert refused(got, url) or spelled in PUBLIC_BY_DESIGN, (url, got.status_code)
        if spelled.endswith("/<path:object_id>/delete/") or "logout" in spelled:
            continue
        before = KillSwitchEvent.objects.count()
        posted = client.post(url, KILLSWITCH_FORM)
        assert posted.status_code != 500, (level, url)
        changed = KillSwitchEvent.objects.count() > before
        if changed:
            assert may_switch and url in (DASHBOARD, "/admin/trading/killswitch/1/change/"), (level, url)
            KillSwitch.objects.filter(pk=1).update(mode="off")
    if user is None:
        return
    model_pages = {f"admin/trading/{m}/": user.has_perm(f"trading.view_{m}") for m in
                   ("trade", "position", "signal", "strategy", "killswitch", "instrument", "notification")}
    for page, allowed in model_pages.items():
        assert (answered[page] in (200, 302)) == allowed, (level, page, answered[page])
    assert (answered["admin/dashboard/"] == 200) == user.has_perms(["trading.view_trade", "trading.view_position"])
    if may_switch:  # and the walk did reach the two places that change it
        assert client.post(DASHBOARD, KILLSWITCH_FORM).status_code == 302

"""Where a login lands, and the index's order: trading staff land on the dashboard, anyone else on the
index; the index lists Trading first and the maintenance models under System."""
import re

import pytest
from django.contrib.auth.models import Permission

pytestmark = pytest.mark.django_db


def log_in(client, user, password):
    page = client.get("/admin/login/")
    assert page.status_code == 200
    return client.post("/admin/login/", {"username": user.username, "password": password,
                                         "next": page.context["next"]}, follow=True)


def test_trading_staff_land_on_the_dashboard(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", password="landing-pw-1")
    answer = log_in(client, user, "landing-pw-1")
    assert answer.redirect_chain[-1][0] == "/admin/dashboard/" and answer.status_code == 200


def test_staff_without_the_dashboards_permissions_land_on_the_index(client, django_user_model):
    user = django_user_model.objects.create_user("config", password="landing-pw-2", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_strategy"))
    answer = log_in(client, user, "landing-pw-2")
    assert answer.redirect_chain[-1][0] == "/admin/" and answer.status_code == 200


def test_the_index_lists_trading_first_and_maintenance_under_system(admin_client):
    page = admin_client.get("/admin/").content.decode()
    sections = re.findall(r'<caption>\s*<a[^>]*>([^<]+)</a>', page)
    assert sections[0] == "Trading" and sections[-1] == "System", sections
    trading, system = page.split(">Trading</a>")[1].split(">System</a>")
    for name in ("Heartbeats", "Config revisions", "Periodic Tasks: Periodic tasks", "Authentication and Authorization: Users"):
        assert name in system and name not in trading, name
    for name in ("Strategies", "Trades", "Positions", "Signals"):
        assert name in trading, name

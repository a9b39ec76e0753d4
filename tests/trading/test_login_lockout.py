"""Admin login throttling (django-axes): 10 wrong passwords lock the account and the address for the
cool-off, the right password is refused meanwhile, the lockout shows in the admin and is alerted once."""
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from pineops.admin_site import PineOpsAdminSite
from trading.models import Notification

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "right-pw-for-tests-7731"
ATTACKER, ELSEWHERE = "203.0.113.9", "198.51.100.20"


@pytest.fixture
def users(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # many logins: keep them fast
    django_user_model.objects.create_superuser("ops", password=PASSWORD)
    django_user_model.objects.create_superuser("other", password=PASSWORD)


def login(address: str, username: str, password: str):
    """One POST to the real admin login form from `address`; (response, logged in?)."""
    client = Client(REMOTE_ADDR=address)
    url = reverse("admin:login") + "?next=/admin/"
    client.get(url)
    response = client.post(url, {"username": username, "password": password, "next": "/admin/"})
    return response, "_auth_user_id" in client.session


def lockout_alerts():
    return Notification.objects.filter(kind="emergency", title__startswith="Admin login locked out")


def test_nine_wrong_passwords_still_let_the_right_one_in(users):
    for _ in range(9):
        response, ok = login(ATTACKER, "ops", "wrong")
        assert response.status_code == 200 and not ok  # the form again, with its error
    assert login(ATTACKER, "ops", PASSWORD)[1]
    assert not lockout_alerts().exists()


def test_ten_wrong_passwords_lock_the_account_and_the_address_until_the_cool_off(users, settings):
    assert settings.AXES_FAILURE_LIMIT == 10 and settings.AXES_COOLOFF_TIME == timedelta(minutes=30)
    for i in range(10):
        response, ok = login(ATTACKER, "ops", f"wrong-{i}")
        assert not ok
    assert response.status_code == 429 and b"Login locked" in response.content
    assert b"30 minutes" in response.content

    # The right password is refused: from that address, for that account from anywhere, and for
    # another account from that address.
    for address, username in ((ATTACKER, "ops"), (ELSEWHERE, "ops"), (ATTACKER, "other")):
        response, ok = login(address, username, PASSWORD)
        assert response.status_code == 429 and not ok, (address, username)
    # Only what was attacked is locked: another account from another address logs in.
    assert login(ELSEWHERE, "other", PASSWORD)[1]

    # One alert for the lockout, whatever came after it.
    assert lockout_alerts().count() == 1
    alert = lockout_alerts().get()
    assert "`ops`" in alert.title and ATTACKER in alert.title and "30 minutes" in alert.body
    assert PASSWORD not in alert.body + alert.title and "wrong-" not in alert.body + str(alert.fields)

    # Still locked just before the cool-off ends (counted from the last attempt) …
    with time_machine.travel(timezone.now() + timedelta(minutes=29)):
        assert not login(ATTACKER, "ops", PASSWORD)[1]
    # … and open after it (the refused attempt at +29 min restarted the cool-off).
    with time_machine.travel(timezone.now() + timedelta(minutes=29 + 31)):
        assert login(ATTACKER, "ops", PASSWORD)[1]
        # A new series of failures is a new lockout, with its own alert.
        for i in range(10):
            login(ATTACKER, "ops", f"again-{i}")
        assert not login(ATTACKER, "ops", PASSWORD)[1]
    assert lockout_alerts().count() == 2


def test_the_cool_off_is_the_configured_one(users, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=2)
    for i in range(10):
        login(ATTACKER, "ops", f"wrong-{i}")
    assert b"2 minutes" in login(ATTACKER, "ops", PASSWORD)[0].content
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert login(ATTACKER, "ops", PASSWORD)[1]


def test_the_lockout_is_listed_in_the_pineops_admin(users, django_user_model):
    from axes.models import AccessAttempt

    for i in range(10):
        login(ATTACKER, "ops", f"wrong-{i}")
    assert AccessAttempt in admin.site._registry and isinstance(admin.site, PineOpsAdminSite)
    staff = Client()
    staff.force_login(django_user_model.objects.get(username="other"))
    index = staff.get(reverse("admin:index")).content.decode()
    assert "Access attempts" in index
    page = staff.get(reverse("admin:axes_accessattempt_changelist") + "?locked_out=yes").content.decode()
    assert "ops" in page and ATTACKER in page and "Locked" in page
    assert "wrong-" not in page  # passwords are never stored with the attempt


def test_env_sets_the_limit_and_the_cool_off(tmp_path):
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.AXES_LOCKOUT_PARAMETERS)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RUNTIME_DIR": str(tmp_path), "PINEOPS_ENV_FILE": "/dev/null",
           "DJANGO_SETTINGS_MODULE": "pineops.settings", "PINEOPS_LOGIN_COOLOFF_MINUTES": "5",
           "PINEOPS_LOGIN_FAILURE_LIMIT": "4"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(maxsplit=2) == ["4", "300.0", "['username', 'ip_address']"]


@pytest.mark.parametrize("proxies, forwarded, expected", [
    (0, "1.1.1.1", "10.0.0.5"),  # no proxy configured: the header is the client's word, ignored
    (1, "6.6.6.6, 1.1.1.1", "1.1.1.1"),  # the address our proxy saw, not what the client claimed
    (2, "6.6.6.6, 1.1.1.1, 10.0.0.2", "1.1.1.1"),
    (1, "", "10.0.0.5"),
])
def test_the_client_address_behind_proxies(settings, proxies, forwarded, expected):
    from django.test import RequestFactory

    from trading.security import client_address

    settings.PROXY_COUNT = proxies
    request = RequestFactory().post("/admin/login/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def test_test_clients_log_in_with_a_request_as_axes_asks(users):
    from axes.exceptions import AxesBackendRequestParameterRequired
    from django.http import HttpRequest

    client = Client()
    with pytest.raises(AxesBackendRequestParameterRequired):  # fail closed: no request, no login
        client.login(username="ops", password=PASSWORD)
    assert client.login(request=HttpRequest(), username="ops", password=PASSWORD)

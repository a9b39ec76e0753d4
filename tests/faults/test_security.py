"""Security properties of the appliance, checked from the outside.

- every URL of the URL conf needs a staff login, except an explicit list of public-by-design ones;
- POSTs without a CSRF token are refused and change nothing;
- the production settings pass `manage.py check --deploy`, force DEBUG off and refuse to start
  without a SECRET_KEY;
- no webhook secret appears in any admin page, /healthz, or an error message;
- the stand-ins listen on 127.0.0.1 only;
- the container runs as a non-root user, and the entrypoint refuses root.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone

from pineops.logging import RedactSecrets
from tests.adminforms import strategy_form_data
from tests.urlwalk import PUBLIC_BY_DESIGN, all_urls, is_login_redirect, refused, walk_patterns
from trading.config import ConfigError, describe, mask, reference_name, resolve
from trading.models import (ContractRoll, DailyRiskState, DeliveryAttempt, Heartbeat, Instrument, KillSwitch,
                            KillSwitchEvent, Notification, Position, Signal, Strategy, Trade)

ROOT = Path(__file__).resolve().parents[2]

@pytest.fixture
def demo(db, webhook_env, settings, redis_prefix):
    settings.REDIS_PREFIX = redis_prefix  # keep Redis keys (dashboard prices, alerts) to this test
    call_command("load_demo", verbosity=0)
    KillSwitch.objects.get_or_create(pk=1)
    return webhook_env


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("ops", password="pw-for-tests-only")


def test_url_walk_covers_admin_and_dashboard(db):
    spelled = {s for s, _ in walk_patterns(get_resolver().url_patterns)}
    # The walk reaches into the admin site's get_urls(), incl. the dashboard and every model admin.
    assert "admin/dashboard/" in spelled and "healthz" in spelled
    for model in admin.site._registry:
        base = f"admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert {base, base + "add/", base + "<path:object_id>/change/"} <= spelled, model
    assert PUBLIC_BY_DESIGN <= spelled, "a public-by-design pattern no longer exists: update the list"


@pytest.mark.parametrize("who", ["anonymous", "non-staff user"])
def test_every_url_needs_a_staff_login_except_the_public_ones(demo, django_user_model, who):
    client = Client()
    if who == "non-staff user":
        client.force_login(django_user_model.objects.create_user("viewer", password="pw-for-tests-only"))
    strategy = Strategy.objects.get(name="ibs_a")
    samples = {"object_id": str(strategy.pk), "pk": str(strategy.pk),
               "content_type_id": str(ContentType.objects.get_for_model(Strategy).pk)}
    urls = all_urls(samples)
    assert len(urls) > 100  # every model admin's pages, not just a few

    public: dict[str, set[int]] = {}
    for spelled, url in urls:
        got = client.get(url)
        if refused(got, url):
            # A POST (e.g. an admin action or a change form submitted blind) is refused the same way.
            posted = client.post(url, {"mode": "halt", "reason": "x", "confirm": "on", "action": "delete_selected"})
            assert refused(posted, url), (spelled, url, posted.status_code, posted.get("Location"))
        else:
            public.setdefault(spelled, set()).add(got.status_code)
            assert got.status_code != 500, (spelled, url)
    assert set(public) == PUBLIC_BY_DESIGN, f"public URL patterns changed: {public}"

    # And what the public ones show is what they are for:
    assert public["admin/login/"] == {200}
    assert public["admin/logout/"] == {302}
    logout = client.get(reverse("admin:logout"))
    assert logout["Location"] == reverse("admin:index") and is_login_redirect(client.get(logout["Location"]), "/admin/")
    assert public["healthz"] <= {200, 503}
    health = client.get("/healthz").json()
    assert set(health) == {"status", "failing", "checks"}
    for check in health["checks"].values():
        assert set(check) <= {"ok", "error", "state", "age_seconds"}
    # The data pages a logged-out visitor might guess really are refused, after the walk too.
    for name in ["admin:dashboard", "admin:trading_strategy_changelist", "admin:trading_signal_changelist"]:
        assert is_login_redirect(client.get(reverse(name)), reverse(name))


# --- CSRF ---------------------------------------------------------------------------------------

def snapshot(strategy_pk) -> dict:
    s = Strategy.objects.get(pk=strategy_pk)
    return {"strategy": model_to_dict(s), "updated_at": s.updated_at,
            "legs": [model_to_dict(leg) for leg in s.legs.order_by("pk")]}


def test_posts_without_a_csrf_token_are_refused_and_change_nothing(demo, superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    killswitch = model_to_dict(KillSwitch.objects.get(pk=1))
    strategy = Strategy.objects.get(name="ibs_a")
    before = snapshot(strategy.pk)

    # The killswitch control on the dashboard.
    dashboard = reverse("admin:dashboard")
    response = client.post(dashboard, {"mode": "halt", "reason": "forged", "confirm": "on"})
    assert response.status_code == 403
    assert model_to_dict(KillSwitch.objects.get(pk=1)) == killswitch and not KillSwitchEvent.objects.exists()
    # The killswitch's own admin page, and a strategy's change form.
    ks_url = reverse("admin:trading_killswitch_change", args=[1])
    assert client.post(ks_url, {"mode": "halt", "reason": "forged"}).status_code == 403
    change = reverse("admin:trading_strategy_change", args=[strategy.pk])
    response = client.post(change, strategy_form_data(strategy, max_bars_held="7", enabled="", _save="Save"))
    assert response.status_code == 403
    # A wrong token is no better than none.
    client.get(dashboard)  # sets the csrftoken cookie
    wrong = {"csrfmiddlewaretoken": secrets.token_urlsafe(48)[:64]}
    assert client.post(change, {**strategy_form_data(strategy, max_bars_held="7"), **wrong}).status_code == 403
    assert client.post(dashboard, {"mode": "halt", "reason": "forged", "confirm": "on", **wrong}).status_code == 403
    assert model_to_dict(KillSwitch.objects.get(pk=1)) == killswitch and not KillSwitchEvent.objects.exists()
    assert snapshot(strategy.pk) == before

    # Control: with the token of the page the same requests go through, so the 403s were CSRF.
    token = client.get(dashboard).context["csrf_token"]
    response = client.post(dashboard, {"mode": "halt", "reason": "drill", "confirm": "on", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and KillSwitch.objects.get(pk=1).mode == "halt"
    response = client.post(change, strategy_form_data(strategy, max_bars_held="7", csrfmiddlewaretoken=token))
    assert response.status_code == 302 and Strategy.objects.get(pk=strategy.pk).max_bars_held == 7


# --- production settings ------------------------------------------------------------------------

def production_env(tmp_path, **extra) -> dict:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PINEOPS_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(64),
           "ALLOWED_HOSTS": "pineops.example.com", "PINEOPS_ENV_FILE": "/dev/null",
           "RUNTIME_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
           "DJANGO_SETTINGS_MODULE": "pineops.settings"}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run(args, env, timeout=60):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_forces_debug_off_and_hardens_cookies(tmp_path):
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.ALLOWED_HOSTS)")
    for debug in (None, "true"):  # DEBUG=true in the environment cannot switch it on in production
        result = run(["-c", code], production_env(tmp_path, DEBUG=debug))
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["False", "True", "True", "True", "['pineops.example.com']"]


@pytest.mark.parametrize("secret_key", [None, ""])
def test_production_without_a_secret_key_refuses_to_start(tmp_path, secret_key):
    result = run(["-c", "import django; django.setup(); print('started')"],
                 production_env(tmp_path, SECRET_KEY=secret_key))
    assert result.returncode != 0 and "started" not in result.stdout
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr
    # And no key was made up for it: the development fallback file is not written in production.
    assert not (tmp_path / "secret_key").exists()


# --- secrets never shown ------------------------------------------------------------------------

def secret_fragments(webhook_env) -> list[str]:
    """Each secret URL, its path and every long segment of the path (the tokens)."""
    out = []
    for url in webhook_env.values():
        path = urlsplit(url).path
        out += [url, path] + [seg for seg in path.split("/") if len(seg) >= 16]
    return out


def assert_no_secret(text: str, webhook_env, where: str):
    for fragment in secret_fragments(webhook_env):
        assert fragment not in text, f"secret fragment {fragment[:6]}… found in {where}"


@pytest.fixture
def busy_demo(demo, superuser):
    """The demo with a row in every admin'd table: signals with payloads, attempts, trades, alerts."""
    strategy = Strategy.objects.get(name="ibs_a")
    cl = Instrument.objects.get(root="CL")
    now = timezone.now().replace(second=0, microsecond=0)
    sig = Signal.objects.create(
        key=f"ibs_a:CL:{now:%Y-%m-%dT%H}:buy", strategy=strategy, instrument=cl, contract="CLZ6",
        bar_time=now - timedelta(hours=2), action="buy", quantity=1, signal_price=Decimal("70.5"), reason="entry",
        payload={"ticker": "CL", "action": "buy", "quantity": 1, "price": 70.5, "extras": {"strategy": "ibs_a"}},
        state="sent", attempts=1, last_status=200, sent_at=now)
    DeliveryAttempt.objects.create(signal=sig, number=1, attempted_at=now, outcome="delivered", status_code=200,
                                   response='{"success": true}', duration_ms=12)
    exit_sig = Signal.objects.create(
        key=f"ibs_a:CL:{now:%Y-%m-%dT%H}:exit", strategy=strategy, instrument=cl, bar_time=now - timedelta(hours=1),
        action="exit", quantity=1, signal_price=Decimal("70.9"), reason="ibs_exit", payload={"ticker": "CL", "action": "exit"},
        state="failed", last_error="HTTP 500 from the broker", attempts=3)
    Trade.objects.create(strategy=strategy, symbol="CL", contract="CLZ6", entry_time=now - timedelta(hours=2),
                         entry_price=Decimal("70.5"), entry_size=1, exit_time=now - timedelta(hours=1),
                         exit_price=Decimal("70.9"), exit_size=1, pnl=Decimal("397.50"), pnl_percent=0.57,
                         exit_reason="ibs_exit", commission=Decimal("2.50"), point_value=Decimal("1000"),
                         session_date=now.date(), entry_signal=sig, exit_signal=exit_sig)
    gc = Instrument.objects.get(root="GC")
    open_sig = Signal.objects.create(key="ibs_a:GC:open:buy", strategy=strategy, instrument=gc,
                                     bar_time=now - timedelta(hours=1), action="buy", quantity=1,
                                     signal_price=Decimal("2000"), reason="entry", payload={"ticker": "GC"})
    Position.objects.create(strategy=strategy, instrument=gc, contract="GCZ6", size=1, signal_time=now - timedelta(hours=1),
                            entry_time=now, entry_price=Decimal("2000"), commission_per_side=Decimal("1.25"),
                            point_value=Decimal("100"), entry_signal=open_sig)
    Notification.objects.create(strategy=strategy, kind="emergency", title="Broker unreachable",
                                body="delivery failed 3 times", fields={"strategy": "ibs_a", "status": 500},
                                state="failed", last_error="HTTP 404 from Discord")
    Notification.objects.create(kind="info", title="hub started", fields={})
    Heartbeat.objects.create(process="hub", host="box", pid=42, state="running", last_seen=now,
                             details={"bars": 12, "last_error": ""})
    Heartbeat.objects.create(process="worker:ibs_a", state="running", last_seen=now - timedelta(minutes=10))
    DailyRiskState.objects.create(strategy=strategy, session_date=now.date(), realized_pnl=Decimal("397.50"), trades=1)
    ContractRoll.objects.create(instrument=cl, from_contract="CLZ6", to_contract="CLF7", rolled_at=now,
                                session_date=now.date(), reason="volume")
    from trading.risk.killswitch import set_mode
    set_mode("entries", "drill", actor="ops", user=superuser)
    return demo


def test_no_secret_in_any_admin_page_or_healthz(busy_demo, superuser, client):
    client.force_login(superuser)
    pages = [reverse("admin:index"), reverse("admin:dashboard"), reverse("admin:dashboard") + "?partial=1",
             reverse("admin:trading_strategy_add"), "/healthz"]
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "trading":
            continue
        info = model._meta.app_label, model._meta.model_name
        pages.append(reverse("admin:%s_%s_changelist" % info))
        pages.append(reverse("admin:%s_%s_changelist" % info) + "?q=ibs")
        for obj in model.objects.all()[:4]:
            pages.append(reverse("admin:%s_%s_change" % info, args=[obj.pk]))
            pages.append(reverse("admin:%s_%s_history" % info, args=[obj.pk]))
    checked = 0
    for url in pages:
        response = client.get(url, follow=True)
        assert response.status_code in (200, 503), (url, response.status_code)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert_no_secret(body.decode(), busy_demo, url)
        checked += 1
    assert checked > 40
    # The strategy page shows the reference and the masked form, so the check above means something.
    page = client.get(reverse("admin:trading_strategy_change", args=[Strategy.objects.get(name="ibs_a").pk]))
    assert "${TRADERSPOST_IBS_A_WEBHOOK}" in page.content.decode() and "chars)" in page.content.decode()
    # The CSV export of trades carries no secret either.
    export = client.get(reverse("admin:trading_trade_export"))  # the list's export button: every trade
    assert_no_secret(b"".join(export.streaming_content).decode(), busy_demo, "trade CSV")


def test_no_secret_in_config_messages_or_logs(webhook_env, monkeypatch, db):
    url = webhook_env["TRADERSPOST_IBS_A_WEBHOOK"]
    assert url in resolve("${TRADERSPOST_IBS_A_WEBHOOK}", "broker_webhook")  # really set
    texts = [describe("${TRADERSPOST_IBS_A_WEBHOOK}", "broker_webhook"),
             describe("${DISCORD_WEBHOOK_URL}", "discord_webhook"), mask(url)]
    # Error paths that format the value or the variable: a literal URL pasted into a field, a bad
    # reference, an empty variable.
    for value in [url, url + " ", f"${{{url}}}", "$TRADERSPOST_IBS_A_WEBHOOK", "${lower}"]:
        with pytest.raises(ConfigError) as exc:
            reference_name(value, "broker_webhook")
        texts.append(str(exc.value))
    monkeypatch.setenv("PINEOPS_EMPTY_WEBHOOK", "   ")
    with pytest.raises(ConfigError) as exc:
        resolve("${PINEOPS_EMPTY_WEBHOOK}", "broker_webhook")
    texts.append(str(exc.value))
    # Model validation of a strategy whose fields hold the URL itself.
    strategy = Strategy(name="leaky", broker_webhook=url, discord_webhook=webhook_env["DISCORD_WEBHOOK_URL"])
    with pytest.raises(ValidationError) as exc:
        strategy.full_clean()
    assert {"broker_webhook", "discord_webhook"} <= set(exc.value.message_dict)
    texts.append(repr(exc.value.message_dict))
    for text in texts:
        assert_no_secret(text, webhook_env, text[:40])
    assert "literal URL" in texts[3]

    # A log line or a traceback that carries a secret by accident is redacted by the logging filter.
    try:
        raise RuntimeError(f"POST {url} failed")
    except RuntimeError:
        record = logging.getLogger("trading").makeRecord("trading", logging.ERROR, __file__, 1, "sending to %s",
                                                         (url,), sys.exc_info())
    assert RedactSecrets().filter(record)
    assert_no_secret(record.getMessage() + record.exc_text, webhook_env, "log record")
    assert "***" in record.getMessage() and "***" in record.exc_text


# --- stand-ins bind to loopback -----------------------------------------------------------------

def test_stand_ins_listen_on_loopback_only(tmp_path):
    from trading.sim.discord import DiscordStandIn
    from trading.sim.gateway import LiveGateway
    from trading.sim.market import generate
    from trading.sim.traderspost import TradersPostStandIn

    files = generate(tmp_path / "mkt", roots=["CL"], start=date(2026, 10, 29), days=1, seed=3, roll_day=0,
                     trades_per_minute=0.2)
    servers = [TradersPostStandIn(), DiscordStandIn(), LiveGateway(list(files.values()), key="db-" + "x" * 29)]
    for server in servers:
        server.start()
    try:
        for server in servers:
            sock = server._sock if isinstance(server, LiveGateway) else server.server.socket
            host, port = sock.getsockname()[:2]
            assert (host, port) == ("127.0.0.1", server.port), server
            assert sock.family == socket.AF_INET, server
            # Listening indeed (not just bound), and reachable on loopback.
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        for server in servers:
            server.stop()


# --- container user -----------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        instruction, _, args = current.strip().partition(" ")
        lines.append((instruction.upper(), args.strip()))
        current = ""
    return lines


def test_dockerfile_runs_as_a_non_root_user():
    instructions = dockerfile_instructions(ROOT / "Dockerfile")
    kinds = [k for k, _ in instructions]
    assert "RUN" in kinds and "USER" in kinds
    last_run = max(i for i, k in enumerate(kinds) if k == "RUN")
    users = [(i, args) for i, (k, args) in enumerate(instructions) if k == "USER"]
    final_index, final_user = users[-1]
    assert final_index > last_run, "USER must come after the last RUN"
    name = final_user.split(":")[0].strip()
    assert name and name not in ("root", "0"), final_user
    # The image's default command runs under that user: no USER switch back afterwards, no sudo/gosu.
    assert all(k != "USER" for k in kinds[final_index + 1:])
    assert not any(re.search(r"\b(sudo|gosu|su-exec)\b", args) for _, args in instructions[final_index:])
    # And the user exists in the image (created by a RUN before it).
    assert any(k == "RUN" and re.search(rf"useradd\b.*\b{re.escape(name)}\b", a) for k, a in instructions[:final_index])


@pytest.mark.parametrize("allow_root, refused_", [(None, True), ("0", True), ("1", False)])
def test_entrypoint_refuses_root(tmp_path, allow_root, refused_):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "id").write_text("#!/bin/sh\necho 0\n")
    marker = tmp_path / "went-further"
    # Whatever the entrypoint would run next goes through PINEOPS_PYTHON: record it and stop there.
    (fake_bin / "python-sentinel").write_text(f"#!/bin/sh\necho \"$@\" >> '{marker}'\nexit 3\n")
    for f in fake_bin.iterdir():
        f.chmod(0o755)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "HOME": str(tmp_path), "PINEOPS_HOME": str(ROOT),
           "PINEOPS_PYTHON": str(fake_bin / "python-sentinel"), "RUNTIME_DIR": str(tmp_path / "rt"),
           "PINEOPS_ENV_FILE": "/dev/null"}
    if allow_root is not None:
        env["PINEOPS_ALLOW_ROOT"] = allow_root
    result = subprocess.run(["bash", str(ROOT / "deploy" / "entrypoint.sh")], env=env, capture_output=True, text=True,
                            timeout=30)
    if refused_:
        assert result.returncode == 64, result.stderr
        assert "refusing to run as root" in result.stderr
        assert not marker.exists() and not (tmp_path / "rt").exists()  # stopped before doing anything
    else:  # the override lets it past the check (the sentinel then stops it): the check is what refused
        assert result.returncode != 64 and marker.exists()
        assert "refusing to run as root" not in result.stderr

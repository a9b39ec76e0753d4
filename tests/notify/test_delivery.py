"""The notification outbox reaches Discord (a local stand-in over real HTTP): in order per webhook,
429 `retry_after` honoured, floods coalesced, failures recorded, nothing lost and nothing doubled."""
import os
import secrets
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import remember_secret
from trading.models import Notification, Strategy
from trading.notify import delivery
from trading.notify.discord import COLOURS
from trading.delivery.alerts import enqueue
from trading.redis_client import get_redis, key
from trading.sim.discord import DiscordStandIn, rate_limited
from trading.sim.httpstandin import answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def discord(settings, redis_prefix, webhook_env, monkeypatch):
    settings.REDIS_PREFIX = redis_prefix
    with DiscordStandIn() as standin:
        url = remember_secret(f"{standin.url}/api/webhooks/42/{secrets.token_urlsafe(24)}")
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", url)
        call_command("load_demo")
        standin.hook_url = url
        yield standin


def titles(standin, status=204):
    return [m["embeds"][0]["title"] for m in standin.messages(status)]


def run_until_idle(timeout=30.0, **kwargs):
    """Run delivery as beat would (every 0.2 s here) until nothing is pending."""
    deadline = time.monotonic() + timeout
    while Notification.objects.filter(state__in=["pending", "sending"]).exists():
        assert time.monotonic() < deadline, list(Notification.objects.values_list("title", "state", "last_error"))
        delivery.deliver_notifications(budget=5, **kwargs)
        time.sleep(0.2)


def test_strategy_and_system_alerts_arrive_in_order_with_strategy_and_colour(discord):
    ibs_a = Strategy.objects.get(name="ibs_a")
    enqueue("entry", "ibs_a: buy 1 CL", strategy=ibs_a, fields={"Price": "71.5"})
    enqueue("emergency", "Stale heartbeat: hub")
    enqueue("exit", "ibs_a: exit CL +120.00 $", strategy=ibs_a)
    report = delivery.deliver_notifications()
    assert len(report.sent) == 3 and not report.failed
    got = discord.messages()
    assert titles(discord) == ["ibs_a: buy 1 CL", "Stale heartbeat: hub", "ibs_a: exit CL +120.00 $"]
    assert [m["embeds"][0]["author"]["name"] for m in got] == ["ibs_a", "PineOps", "ibs_a"]
    assert [m["embeds"][0]["color"] for m in got] == [COLOURS["entry"], COLOURS["emergency"], COLOURS["exit"]]
    assert {"name": "Price", "value": "71.5", "inline": True} in got[0]["embeds"][0]["fields"]
    assert set(Notification.objects.values_list("state", flat=True)) == {"sent"}
    assert delivery.deliver_notifications().counts()["sent"] == 0  # sent ones never again


def test_429_retry_after_2_delays_but_keeps_order_and_loses_nothing(discord):
    discord.script(rate_limited(2.0))
    for i in range(8):
        enqueue("info", f"alert {i}")
    started = time.monotonic()
    run_until_idle()
    ok = [e for e in discord.snapshot() if e["status"] == 204]
    assert titles(discord) == [f"alert {i}" for i in range(8)]  # in order, none lost, none doubled
    assert [e["status"] for e in discord.snapshot()][0] == 429
    assert ok[0]["received_at"] - discord.snapshot()[0]["received_at"] >= 1.9  # the first one waited out retry_after
    assert time.monotonic() - started >= 2
    assert set(Notification.objects.values_list("state", flat=True)) == {"sent"}


def test_discords_own_bucket_limit_is_respected_without_loss(discord):
    discord.control({"rate_limit": [5, 1.0]})
    for i in range(9):
        enqueue("info", f"bucket {i}")
    run_until_idle()
    assert titles(discord) == [f"bucket {i}" for i in range(9)]
    assert sum(e["status"] == 429 for e in discord.snapshot()) <= 1  # headers say when to pause


def test_a_flood_becomes_one_summary(discord):
    for i in range(50):
        enqueue("emergency" if i % 10 == 0 else "info", f"flood {i}")
    report = delivery.deliver_notifications()
    assert len(report.coalesced) == 50 and len(discord.messages()) == 1
    (embed,) = discord.messages()[0]["embeds"]
    assert embed["title"].startswith("50 alerts") and embed["color"] == COLOURS["emergency"]
    assert "flood 0" in embed["description"] and "flood 49" in embed["description"]
    assert Notification.objects.filter(state="coalesced").count() == 50


def test_500_is_retried_once_recovered_and_400_fails_with_the_body(discord):
    discord.script(answer(500, {"message": "oops"}))
    enqueue("info", "retried")
    run_until_idle()
    assert titles(discord, None) == ["retried", "retried"] and titles(discord) == ["retried"]
    row = Notification.objects.get(title="retried")
    assert (row.state, row.attempts) == ("sent", 2)

    discord.script(answer(400, {"code": 50035, "message": "Invalid Form Body"}))
    enqueue("info", "refused")
    enqueue("info", "after the refused one")
    delivery.deliver_notifications()
    refused = Notification.objects.get(title="refused")
    assert refused.state == "failed" and "400" in refused.last_error and "Invalid Form Body" in refused.last_error
    assert Notification.objects.get(title="after the refused one").state == "sent"  # no retry storm, no block


def test_unconfigured_webhook_fails_the_row_with_the_reason(discord, monkeypatch):
    Strategy.objects.filter(name="ibs_b").update(discord_webhook="${IBS_B_DISCORD_NOT_SET}")
    monkeypatch.delenv("IBS_B_DISCORD_NOT_SET", raising=False)
    enqueue("info", "nowhere to go", strategy=Strategy.objects.get(name="ibs_b"))
    enqueue("info", "system one")
    delivery.deliver_notifications()
    row = Notification.objects.get(title="nowhere to go")
    assert row.state == "failed" and "IBS_B_DISCORD_NOT_SET is not set" in row.last_error
    assert titles(discord) == ["system one"]


def test_discord_down_for_an_hour_delivers_after_and_gives_up_only_after_a_day(discord, monkeypatch):
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", remember_secret(f"http://127.0.0.1:9/api/webhooks/1/{secrets.token_hex(8)}"))
    enqueue("emergency", "while down")
    t0 = timezone.now()
    clock = [t0]
    for minute in range(0, 61, 5):  # an hour of runs: each records an attempt, none raises
        clock[0] = t0 + timedelta(minutes=minute)
        delivery.deliver_notifications(clock=lambda: clock[0], sleep=lambda s: None, budget=2)
    row = Notification.objects.get(title="while down")
    assert row.state == "pending" and row.attempts >= 5 and "connection error" in row.last_error
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", discord.hook_url)
    clock[0] = t0 + timedelta(minutes=70)
    delivery.deliver_notifications(clock=lambda: clock[0], sleep=lambda s: None)
    assert titles(discord) == ["while down"] and Notification.objects.get(title="while down").state == "sent"

    monkeypatch.setenv("DISCORD_WEBHOOK_URL", f"http://127.0.0.1:9/api/webhooks/1/{secrets.token_hex(8)}")
    enqueue("info", "never deliverable")
    clock[0] = t0 + timedelta(hours=25)
    delivery.deliver_notifications(clock=lambda: clock[0], sleep=lambda s: None, budget=2)
    late = Notification.objects.get(title="never deliverable")
    assert late.state == "failed" and "gave up" in late.last_error


def test_a_run_killed_mid_send_is_redelivered_and_a_concurrent_run_waits(discord):
    row = enqueue("emergency", "claimed then killed")
    Notification.objects.filter(pk=row.pk).update(state="sending",
                                                  next_attempt_at=timezone.now() - timedelta(minutes=5))
    lock = get_redis().lock(key("lock", "notify-delivery"), timeout=30)
    assert lock.acquire()
    try:
        assert delivery.deliver_notifications().counts() == {"sent": 0, "coalesced": 0, "deferred": 0, "failed": 0}
    finally:
        lock.release()
    delivery.deliver_notifications()
    assert titles(discord) == ["claimed then killed"]
    assert Notification.objects.get(pk=row.pk).state == "sent"


def test_the_lock_of_a_run_whose_process_was_killed_is_taken_over_at_once(discord):
    """A Celery worker killed -9 mid-run leaves the delivery lock in Redis for its time to live (80 s): the
    next run sees its holder is gone from this host and delivers now, not after the lock expires."""
    import subprocess

    from trading.delivery.claims import holder_token

    dead = subprocess.Popen(["true"])
    dead.wait()
    get_redis().set(key("lock", "notify-delivery"), holder_token().replace(f":{os.getpid()}:", f":{dead.pid}:"),
                    ex=80)
    enqueue("emergency", "raised while the last run's process was killed")
    assert delivery.deliver_notifications().sent
    assert titles(discord) == ["raised while the last run's process was killed"]
    assert not get_redis().exists(key("lock", "notify-delivery"))  # released after the run


def test_alert_claims_and_attempts_go_through_the_delivery_core(discord):
    """Every POST is in the attempt log with its outcome; a claim whose run died is taken back at once and
    the alert sent again (at least once), one of a live run only after the lease."""
    import subprocess
    from datetime import timedelta

    from django.utils import timezone

    from trading.delivery.claims import holder_token
    from trading.models import DeliveryAttempt
    from trading.notify.delivery import CLAIM_LEASE, recover_claims

    standin = discord
    enqueue("info", "first", strategy=None)
    run_until_idle()
    (attempt,) = DeliveryAttempt.objects.filter(notification__title="first")
    assert (attempt.outcome, attempt.status_code, attempt.number) == ("delivered", 204, 1)

    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = enqueue("info", "claimed by a run that died", strategy=None)
    alive = enqueue("info", "claimed by a live run", strategy=None)
    now = timezone.now()
    Notification.objects.filter(pk=gone.pk).update(state="sending", claimed_at=now,
                                                   claimed_by=holder_token().replace(f":{os.getpid()}:", f":{dead.pid}:"))
    Notification.objects.filter(pk=alive.pk).update(state="sending", claimed_at=now, claimed_by=holder_token())
    assert recover_claims(now) == 1 and Notification.objects.get(pk=gone.pk).state == "pending"
    assert recover_claims(now + CLAIM_LEASE + timedelta(seconds=1)) == 1  # the live one only after the lease
    run_until_idle()
    assert {t for t in titles(standin)} >= {"claimed by a run that died", "claimed by a live run"}


def test_a_run_killed_between_its_attempt_log_and_the_count_is_resent_once_and_numbered_on(discord):
    """A Celery worker killed after its POST was logged and before the row's count moved: the resend
    is attempt 2, never a second attempt 1 (that raised, and the run left 75 alerts claimed)."""
    from trading.models import DeliveryAttempt

    row = enqueue("emergency", "posted, then the worker was killed")
    later = enqueue("info", "queued behind it")
    DeliveryAttempt.objects.create(notification=row, number=1, attempted_at=timezone.now(), outcome="delivered",
                                   status_code=204)
    report = delivery.deliver_notifications()
    assert report.failed == [] and sorted(report.sent) == sorted([row.pk, later.pk])
    assert list(DeliveryAttempt.objects.filter(notification=row).values_list("number", flat=True)) == [1, 2]
    assert Notification.objects.get(pk=row.pk).attempts == 2
    assert titles(discord) == ["posted, then the worker was killed", "queued behind it"]


def test_a_run_that_fails_midway_puts_its_claimed_alerts_back_at_once(discord, monkeypatch):
    """Whatever breaks inside a run (here the attempt log), its claims are released, not held for the
    lease by a Celery child that lives on; the next run delivers them."""
    row = enqueue("emergency", "claimed by a run that then failed")

    def broken(*args, **kwargs):
        raise RuntimeError("the attempt log is away")

    working = delivery._log_attempt
    monkeypatch.setattr(delivery, "_log_attempt", broken)
    with pytest.raises(RuntimeError):
        delivery.deliver_notifications()
    assert Notification.objects.get(pk=row.pk).state == "pending"
    monkeypatch.setattr(delivery, "_log_attempt", working)
    assert delivery.deliver_notifications().sent == [row.pk]

"""A simulated desk for the order-path fault tests: ibs_a's ledger, the real outbox and the real
TradersPost stand-in over HTTP, all on one simulated clock (`django.utils.timezone.now` is the
simulated clock here, so created_at, claims, expiry and the Celery checks agree with it)."""
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone as django_timezone

from strategies.bars import Bar
from strategies.ibs import EntrySignal, ExitSignal
from strategies.portfolio import Entry, StepOutcome
from tests.conftest import remember_secret
from tests.e2e.appliance import free_port
from trading.execution import traderspost
from trading.execution.ledger import Ledger, price
from trading.execution.outbox import MAX_ATTEMPTS, send_pending_orders
from trading.execution.recovery import alert_stuck_pending
from trading.execution.ratelimit import MemoryRateLimiter
from trading.execution.configuration import load_config
from trading.models import Notification, Position, Signal
from trading.risk import killswitch
from trading.sim.traderspost import TradersPostStandIn

__all__ = ["DAY", "MAX_ATTEMPTS", "SECOND", "Broker", "Clock", "Desk", "chicago", "delivered_twice", "desk",
           "emergency"]

CHICAGO = ZoneInfo("America/Chicago")
DAY = date(2026, 11, 18)  # a Wednesday, an ordinary CME session
PRICES = {"CL": 70.0, "6A": 0.65, "GC": 2000.0}
SECOND = timedelta(seconds=1)


def chicago(hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(DAY, time(hh, mm, ss), tzinfo=CHICAGO).astimezone(dt_timezone.utc)


class Clock:
    def __init__(self, start: datetime):
        self.t = start

    def now(self) -> datetime:
        return self.t


@dataclass
class Post:
    at: datetime  # simulated time
    key: str
    action: str
    outcome: str
    status: int | None
    error: str
    retry_after: float | None


class Broker:
    """`deliver` as the outbox calls it: the real `traderspost.deliver` to the stand-in, answered as
    `behaviour(now, payload)` says: None (the stand-in's own answer), a scripted answer (dict), or
    "refused" (nothing listens: the POST never leaves this host)."""

    def __init__(self, standin: TradersPostStandIn, clock: Clock, refused_url: str):
        self.standin, self.clock, self.refused_url = standin, clock, refused_url
        self.behaviour = lambda now, payload: None
        self.posts: list[Post] = []

    def deliver(self, url, payload, timeout):
        now = self.clock.now()
        how = self.behaviour(now, payload)
        if how == "refused":
            url = self.refused_url
        elif how:
            self.standin.script(how)
        result = traderspost.deliver(url, payload, timeout)
        assert self.standin.pending_script() == [], "a scripted answer was not used by its POST"
        self.posts.append(Post(now, payload["extras"]["signal_id"], payload["action"], result.outcome,
                               result.status_code, result.error, result.retry_after))
        return result

    def posts_of(self, key: str) -> list[Post]:
        return [p for p in self.posts if p.key == key]

    def received(self) -> list[dict]:
        """What reached the stand-in (answered or not), oldest first."""
        return self.standin.snapshot()


class Desk:
    """ibs_a's ledger, the outbox and the broker on one simulated clock."""

    def __init__(self, clock: Clock, broker: Broker):
        self.clock, self.broker = clock, broker
        self.config = load_config("ibs_a")
        self.ledger = Ledger(self.config.strategy, self.config.legs)
        self.limiter = MemoryRateLimiter(clock=lambda: clock.now().timestamp())
        self.timeout = 5.0
        self.stuck_alerts: list[str] = []

    # --- decisions, written as the worker's ledger writes them ----------------------------------------
    def entry(self, root: str) -> Signal:
        """The worker decides an entry now, on the hour that just closed (the order's bar starts 1 h ago)."""
        bar = self.clock.now() - timedelta(hours=1)
        p = PRICES[root]
        outcome = StepOutcome(entries=[Entry(root, EntrySignal(bar, p, 0.1), None)])
        (sig,) = self.ledger.apply(bar, {root: Bar(root, f"{root}Z6", "1h", bar, p, p, p, p, 1, 1)}, outcome,
                                   self.config.params, {})
        return sig

    def fill(self, root: str) -> Position:
        pos = Position.objects.get(strategy=self.config.strategy, instrument__root=root, state="open")
        pos.filled, pos.entry_price = True, price(PRICES[root])
        pos.stop_price, pos.target_price = price(PRICES[root] * 0.99), price(PRICES[root] * 1.02)
        pos.save()
        return pos

    def exit(self, root: str) -> Signal:
        bar = self.clock.now() - timedelta(hours=1)
        with transaction.atomic():
            pos = Position.objects.select_for_update().get(strategy=self.config.strategy, instrument__root=root,
                                                           state="open")
            (sig,) = self.ledger._request_exit(pos, ExitSignal(bar, PRICES[root] * 1.01, "ibs_exit", 0.9),
                                               self.config.legs[root], killswitch.state(), self.clock.now())
            return sig

    # --- time passing -------------------------------------------------------------------------------
    def run(self, until: datetime, events=(), step: timedelta = SECOND) -> None:
        """Each `step` of simulated time: due events, then one outbox pass; each minute the stuck check."""
        events = sorted(events, key=lambda e: e[0])
        next_check = self.clock.t
        while self.clock.t <= until:
            while events and events[0][0] <= self.clock.t:
                events.pop(0)[1]()
            send_pending_orders(now=self.clock.t, deliver=self.broker.deliver, limiter=self.limiter,
                                timeout=self.timeout)
            if self.clock.t >= next_check:
                self.stuck_alerts += alert_stuck_pending(now=self.clock.t)
                next_check += timedelta(minutes=1)
            self.clock.t += step


@pytest.fixture
def desk(webhook_env, monkeypatch):
    call_command("load_demo")
    standin = TradersPostStandIn().start()
    path = f"/trading/webhook/{uuid.uuid4()}/{secrets.token_hex(8)}"
    monkeypatch.setenv("TRADERSPOST_IBS_A_WEBHOOK", remember_secret(standin.url + path))
    clock = Clock(chicago(10))
    monkeypatch.setattr(django_timezone, "now", clock.now)
    try:
        yield Desk(clock, Broker(standin, clock, remember_secret(f"http://127.0.0.1:{free_port()}{path}")))
    finally:
        standin.stop()


def emergency(key: str) -> list[str]:
    return list(Notification.objects.filter(kind="emergency", fields__signal=key).values_list("title", flat=True))


def delivered_twice(broker: Broker) -> int:
    """Orders the stand-in accepted more than once (each extra one is a second order at TradersPost)."""
    counts = Counter(e["order"]["extras"]["signal_id"] for e in broker.received() if e["status"] == 200)
    return sum(n - 1 for n in counts.values() if n > 1)



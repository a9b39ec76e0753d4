"""The hub process's wiring: the feed's lease (one hub per feed, trading.marketdata.lease), the hub, its bar
writer and bar-store writer, the database's side of its rolls, contract definitions and held contracts, its
heartbeat, and the live subscription. `manage.py runhub` only starts `HubService`."""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta, timezone

from django.conf import settings
import redis
from django.db import close_old_connections, transaction

from trading.config import resolve
from trading.delivery.alerts import enqueue
from trading.health.heartbeat import beat
from trading.marketdata import streams
from trading.marketdata.contractstore import front_state, save_contracts
from trading.marketdata.feed import FeedHealth
from trading.marketdata.hub import Hub
from trading.marketdata.lease import HubLease, LeaseLost
from trading.marketdata.live import restart_point, run_live
from trading.marketdata.storewriter import BarStoreWriter
from trading.redis_client import get_redis
from trading.models import ContractRoll, Instrument, Position, StrategyInstrument

log = logging.getLogger(__name__)
UTC = timezone.utc
DATASET = "GLBX.MDP3"


class NothingToSubscribe(Exception):
    """No enabled strategy trades an instrument and no position is open: the hub has no root to follow."""


def subscribed_instruments() -> list[Instrument]:
    """Roots traded by an enabled instrument of an enabled strategy, and roots a position is still open in
    (a leg disabled with its position open is still managed, on these bars)."""
    ids = set(StrategyInstrument.objects.filter(enabled=True, strategy__enabled=True)
              .values_list("instrument", flat=True))
    ids |= set(Position.objects.managed().values_list("instrument", flat=True))
    return list(Instrument.objects.filter(pk__in=ids).order_by("root").prefetch_related("contracts"))


def held_contracts() -> dict[str, set[str]]:
    """The contracts positions are open in, by root: the hub keeps building each one's bars after its roll."""
    out: dict[str, set[str]] = {}
    for root, contract in Position.objects.managed().exclude(contract="").values_list("instrument__root",
                                                                                      "contract"):
        out.setdefault(root, set()).add(contract)
    return out


def record_roll(roll, rolled_at: datetime) -> None:
    """The instrument's front becomes the roll's contract, the roll is logged (once) and alerted."""
    close_old_connections()
    with transaction.atomic():
        instrument = Instrument.objects.get(root=roll.root)
        instrument.active_contract = roll.to_contract
        instrument.save(update_fields=["active_contract", "updated_at"])
        ContractRoll.objects.get_or_create(instrument=instrument, session_date=roll.session_date,
                                           to_contract=roll.to_contract,
                                           defaults=dict(from_contract=roll.from_contract, rolled_at=rolled_at,
                                                         reason=roll.reason[:200]))
        title = f"Roll {roll.root}: {roll.from_contract} → {roll.to_contract}" if roll.from_contract else \
            f"Front {roll.root}: {roll.to_contract}"
        enqueue("info", title, body=f"From session {roll.session_date}: {roll.reason}",
                dedupe_key=f"roll:{roll.root}:{roll.session_date}:{roll.to_contract}")


class RollRecorder:
    """`on_roll` of the hub: rolls reach the database in order, each stamped with the market time it was
    decided at (`clock()`, ns). One that cannot be written (the database is away) is kept and written by
    `retry()`, which every heartbeat calls, once it is back: otherwise the instrument's front contract would
    stay the old one for the workers and a restarted hub."""

    def __init__(self, clock=lambda: 0):
        self.clock = clock
        self.unrecorded: list = []  # (roll, rolled_at)

    def __call__(self, roll) -> None:
        self.unrecorded.append((roll, datetime.fromtimestamp(self.clock() / 1e9, UTC)))
        self.retry()  # raises while the database is away: the hub logs it, the roll stays queued

    def retry(self) -> None:
        while self.unrecorded:
            roll, rolled_at = self.unrecorded[0]
            record_roll(roll, rolled_at)
            log.info("roll recorded root=%s to=%s", roll.root, roll.to_contract)
            self.unrecorded.pop(0)


class ContractRecorder:
    """`on_definition` of the hub: definitions of the roots' outrights, kept as Contract rows. They
    arrive in bursts (a session's replay of the week's definitions), so they are written together by
    `flush()`, which every heartbeat calls; what cannot be written yet waits for the next one."""

    def __init__(self):
        self.pending: dict = {}

    def __call__(self, contract) -> None:
        self.pending[(contract.root, contract.raw_symbol)] = contract

    def flush(self) -> None:
        if self.pending:
            batch, self.pending = self.pending, {}
            try:
                changed = save_contracts(batch.values())
            except Exception:
                self.pending = {**batch, **self.pending}
                raise
            if changed:
                log.info("contracts stored from definitions: %d changed of %d", changed, len(batch))


class HubService:
    """The hub process: it stands by until it holds the feed's lease, then runs one Hub fed by Databento Live
    (or the gateway named by DATABENTO_GATEWAY, host:port), its bars written by one BarPublisher (checked
    against the lease) and its hourly and daily bars stored by a BarStoreWriter, with a heartbeat every
    `heartbeat` seconds that also writes what the database could not take before (rolls, definitions) and
    refreshes the contracts held. A hub that loses the lease to another stops writing, alerts, and stands by
    again with its state rebuilt from the database and the streams."""

    def __init__(self, *, heartbeat: float = 5.0, stopping=lambda: False):
        instruments = subscribed_instruments()
        if not instruments:
            raise NothingToSubscribe("no enabled strategy trades any instrument: nothing to subscribe to")
        self.key = resolve("${DATABENTO_API_KEY}", "DATABENTO_API_KEY")  # ConfigError names what is wrong
        self.gateway = os.environ.get("DATABENTO_GATEWAY", "")
        self.heartbeat_every = heartbeat
        self.stopping = stopping
        self.lease = HubLease(get_redis(), DATASET)
        self.store = BarStoreWriter()
        self.heartbeat_file = settings.RUNTIME_DIR / "hub_heartbeat.json"
        self.build(instruments)

    def build(self, instruments: list[Instrument] | None = None) -> None:
        """A fresh hub (fronts and held contracts from the database) with its writers and recorders."""
        instruments = instruments or subscribed_instruments()
        self.publisher = streams.BarPublisher(on_fresh=self.store.put, lease=self.lease)
        self.contracts = ContractRecorder()
        fronts = {i.root: front_state(i) for i in instruments}
        self.rolls = RollRecorder(clock=lambda: self.hub.clock)
        self.hub = Hub(fronts, publish=self.publisher.add, flush=self.publisher.send, on_roll=self.rolls,
                       on_watermark=self.publisher.watermark, on_definition=self.contracts)
        self.publisher.on_duplicate = self.hub.duplicate
        self.hub.hold(held_contracts())
        self.roots = sorted(fronts)
        self.feed = FeedHealth(timedelta(minutes=settings.FEED_GAP_MINUTES),
                               alert=lambda kind, title, body: enqueue(kind, title, body=body))

    def restart_point(self) -> int | None:
        """Where the replay starts again (the earliest unfinished minute of the streams). Redis away at the
        start (restarting, or not up yet): waited for, a line a second naming it, never a crash."""
        while True:
            try:
                return restart_point({root: streams.last_bar_ms(root) for root in self.roots})
            except redis.RedisError as exc:
                if self.stopping():
                    raise
                log.error("hub waiting for Redis before it subscribes: %s: %s", exc.__class__.__name__, exc)
                time.sleep(1)

    def run(self) -> None:
        try:
            while self.lease.wait(self.stopping):
                try:
                    self.run_feed()
                    return
                except LeaseLost as exc:
                    log.error("hub lost the feed: %s", exc)
                    self.alert("emergency", "Hub lost the feed to another hub", f"{exc}. Check that one hub runs "
                               "per feed: this one was frozen or cut off from Redis past its lease.")
                    self.rebuild()  # stands by again; taking the feed back starts afresh from the streams
        finally:
            self.lease.release()
            self.store.close()

    def rebuild(self) -> None:
        """`build` again, waiting for the database while it is away."""
        while True:
            try:
                return self.build()
            except Exception as exc:  # noqa: BLE001 — the database away: a standby waits for it
                if self.stopping():
                    return
                log.error("hub waiting for the database to rebuild its state: %s", exc.__class__.__name__)
                time.sleep(1)

    @staticmethod
    def alert(kind: str, title: str, body: str) -> None:
        try:
            close_old_connections()
            enqueue(kind, title, body=body)
        except Exception as exc:  # noqa: BLE001 — the database away (or locked by a frozen host): the bars go on
            log.error("alert not queued title=%r: %s", title, exc.__class__.__name__)

    def run_feed(self) -> None:
        """The feed while this hub holds the lease: subscribe, build and write bars until stopped."""
        hub = self.hub
        first_start = self.restart_point()
        log.info("hub starting roots=%s gateway=%s start=%s holder=%s", ",".join(self.roots),
                 self.gateway or "databento", first_start and datetime.fromtimestamp(first_start / 1e9, UTC).isoformat(),
                 self.lease.token)
        self.alert("startup", "Hub started", f"Subscribed roots: {', '.join(self.roots)}")
        host, _, port = self.gateway.partition(":")
        run_live(hub, key=self.key, dataset=DATASET, roots=self.roots, gateway=host or None,
                 port=int(port) if port else None, stopping=self.stopping, heartbeat=self.heartbeat,
                 heartbeat_every=self.heartbeat_every, first_start=first_start, renew=self.lease.renew)
        self.publisher.flush()  # the last call's answer: every bar written (or held and logged) before the exit
        log.info("hub stopped counters=%s", dict(hub.counters))
        close_old_connections()
        enqueue("shutdown", "Hub stopped", body=f"{hub.counters['bars_1m']} minute bars this run")

    def heartbeat(self, hub: Hub, state: str = "running") -> None:
        """Each step on its own: a database outage leaves the others (and the bars) going."""
        close_old_connections()
        if self.rolls.unrecorded:
            try:
                self.rolls.retry()
            except Exception as exc:  # noqa: BLE001 — still away: kept for the next heartbeat
                log.error("%d roll(s) not recorded yet: %s", len(self.rolls.unrecorded), exc.__class__.__name__)
        try:
            hub.hold(held_contracts())
        except Exception as exc:  # noqa: BLE001 — the database is away: the contracts held so far stay
            log.error("held contracts not refreshed: %s", exc.__class__.__name__)
        try:
            self.contracts.flush()
        except Exception as exc:  # noqa: BLE001 — the database is away: kept for the next heartbeat
            log.error("%d contract definition(s) not stored yet: %s", len(self.contracts.pending),
                      exc.__class__.__name__)
        stopped = self.stopping()
        try:
            problems = {} if stopped else self.feed.check(hub.clock, hub.last_trades())
            beat("hub", state="stopped" if stopped else state, interval=int(max(1, self.heartbeat_every)),
                 last_bar_time=hub.last_bar_time, file=self.heartbeat_file,
                 details={"counters": dict(hub.counters), "fronts": {r: s.front.active for r, s in hub.roots.items()},
                          "feed": problems})
        except Exception as exc:  # noqa: BLE001 — a database outage must not stop the bars
            log.error("hub heartbeat not written: %s", exc.__class__.__name__)

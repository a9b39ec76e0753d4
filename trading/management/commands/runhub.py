"""`manage.py runhub`: the market-data hub process (Databento Live → bars → Redis Streams)."""
import logging
import os
import signal
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, transaction
from django.utils import timezone as dj_timezone

from trading.config import ConfigError, resolve
from trading.health.heartbeat import beat
from trading.marketdata import streams
from trading.marketdata.barstore import store_bar
from trading.marketdata.contractstore import front_state, save_contracts
from trading.marketdata.feed import FeedHealth
from trading.marketdata.hub import Hub
from trading.marketdata.live import restart_point, run_live
from trading.models import ContractRoll, Instrument, Position, StrategyInstrument
from trading.delivery.alerts import enqueue

log = logging.getLogger(__name__)


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


def record_roll(roll) -> None:
    close_old_connections()
    with transaction.atomic():
        instrument = Instrument.objects.get(root=roll.root)
        instrument.active_contract = roll.to_contract
        instrument.save(update_fields=["active_contract", "updated_at"])
        ContractRoll.objects.get_or_create(instrument=instrument, session_date=roll.session_date,
                                           to_contract=roll.to_contract,
                                           defaults=dict(from_contract=roll.from_contract, rolled_at=dj_timezone.now(),
                                                         reason=roll.reason[:200]))
        title = f"Roll {roll.root}: {roll.from_contract} → {roll.to_contract}" if roll.from_contract else \
            f"Front {roll.root}: {roll.to_contract}"
        enqueue("info", title, body=f"From session {roll.session_date}: {roll.reason}",
                dedupe_key=f"roll:{roll.root}:{roll.session_date}:{roll.to_contract}")


class RollRecorder:
    """`on_roll` of the hub: rolls reach the database in order. One that cannot be written (the
    database is away) is kept and written by `retry()`, which every heartbeat calls, once it is back:
    otherwise the instrument's front contract would stay the old one for the workers and a restarted hub."""

    def __init__(self):
        self.unrecorded: list = []

    def __call__(self, roll) -> None:
        self.unrecorded.append(roll)
        self.retry()  # raises while the database is away: the hub logs it, the roll stays queued

    def retry(self) -> None:
        while self.unrecorded:
            record_roll(self.unrecorded[0])
            log.info("roll recorded root=%s to=%s", self.unrecorded[0].root, self.unrecorded[0].to_contract)
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


class Command(BaseCommand):
    help = "Run the market-data hub: Databento Live trades → 1m/1h/1d bars in Redis Streams."

    def add_arguments(self, parser):
        parser.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")

    def handle(self, *args, heartbeat=5.0, **options):
        instruments = subscribed_instruments()
        if not instruments:
            raise CommandError("no enabled strategy trades any instrument: nothing to subscribe to")
        try:
            key = resolve("${DATABENTO_API_KEY}", "DATABENTO_API_KEY")
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        gateway = os.environ.get("DATABENTO_GATEWAY", "")  # host:port of a local gateway; empty: Databento
        host, _, port = gateway.partition(":")
        fronts = {i.root: front_state(i) for i in instruments}
        def store_hourly(bar):
            if bar.timeframe in ("1h", "1d") and bar.stream == bar.symbol:  # a held contract's bars: streams only
                try:
                    store_bar(bar)  # keeps the bar store current for warmups and backtests
                except Exception as exc:  # noqa: BLE001 — the streams are what trading needs now
                    log.error("bar not stored root=%s ts=%s: %s", bar.symbol, bar.ts, exc.__class__.__name__)

        publisher = streams.BarPublisher(on_fresh=store_hourly)
        rolls, contracts = RollRecorder(), ContractRecorder()
        hub = Hub(fronts, publish=publisher.add, flush=publisher.send, on_roll=rolls,
                  on_watermark=publisher.watermark, on_definition=contracts)
        publisher.counters = hub.counters
        hub.hold(held_contracts())
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        heartbeat_file = settings.RUNTIME_DIR / "hub_heartbeat.json"
        feed = FeedHealth(timedelta(minutes=settings.FEED_GAP_MINUTES),
                          alert=lambda kind, title, body: enqueue(kind, title, body=body))

        def send_heartbeat(hub, state="running"):
            close_old_connections()
            if rolls.unrecorded:
                try:
                    rolls.retry()
                except Exception as exc:  # noqa: BLE001 — still away: kept for the next heartbeat
                    log.error("%d roll(s) not recorded yet: %s", len(rolls.unrecorded), exc.__class__.__name__)
            try:
                hub.hold(held_contracts())
            except Exception as exc:  # noqa: BLE001 — the database is away: the contracts held so far stay
                log.error("held contracts not refreshed: %s", exc.__class__.__name__)
            try:
                contracts.flush()
            except Exception as exc:  # noqa: BLE001 — the database is away: kept for the next heartbeat
                log.error("%d contract definition(s) not stored yet: %s", len(contracts.pending),
                          exc.__class__.__name__)
            try:
                problems = {} if stopping else feed.check(hub.clock, hub.last_trades())
                beat("hub", state="stopped" if stopping else state, interval=int(max(1, heartbeat)),
                     last_bar_time=hub.last_bar_time, file=heartbeat_file,
                     details={"counters": dict(hub.counters), "fronts": {r: s.front.active for r, s in hub.roots.items()},
                              "feed": problems})
            except Exception as exc:  # noqa: BLE001 — a database outage must not stop the bars
                log.error("hub heartbeat not written: %s", exc.__class__.__name__)

        roots = sorted(fronts)
        first_start = restart_point({root: streams.last_bar_ms(root) for root in roots})
        log.info("hub starting roots=%s gateway=%s start=%s", ",".join(roots), gateway or "databento",
                 first_start and datetime.fromtimestamp(first_start / 1e9, timezone.utc).isoformat())
        enqueue("startup", "Hub started", body=f"Subscribed roots: {', '.join(roots)}")
        run_live(hub, key=key, dataset="GLBX.MDP3", roots=roots, gateway=host or None, port=int(port) if port else None,
                 stopping=lambda: bool(stopping), heartbeat=send_heartbeat, heartbeat_every=heartbeat,
                 first_start=first_start)
        publisher.flush()  # the last call's answer: every bar written (or held and logged) before the exit
        log.info("hub stopped counters=%s", dict(hub.counters))
        close_old_connections()
        enqueue("shutdown", "Hub stopped", body=f"{hub.counters['bars_1m']} minute bars this run")

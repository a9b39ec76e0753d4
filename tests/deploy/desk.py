"""Desks on network namespaces for the multi-host trading tests: one generated market, and per desk its own
database, Redis prefix, local Databento gateway and TradersPost stand-in, all reached over the bridge
(tests/deploy/netns.py). ibs_a trades ROOTS_A and ibs_b ROOTS_B, both without ML or daily stop, so their orders
are the backtest's (max 2 and 3 positions, as the demo sets them)."""
from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from datetime import date
from decimal import Decimal

import redis

from strategies.backtest import Leg, run
from strategies.instruments import CONTRACT_SPECS, DEMO_COMMISSION
from strategies.params import IBSParams
from tests.conftest import remember_secret
from tests.deploy.netns import Network, start_on
from tests.e2e.appliance import ProcessEnv, free_port, wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import TradingRun, hourly_frames
from trading.sim.gateway import LiveGateway
from trading.sim.market import front_month, generate
from trading.sim.traderspost import TradersPostStandIn

KEY = "db-" + "ScaledDeskTestKey00000000000022"
ROOTS = {"ibs_a": ["6A", "CL", "GC"], "ibs_b": ["6B", "SI"]}
MAX_POSITIONS = {"ibs_a": 2, "ibs_b": 3}
START = date(2026, 11, 2)
WORKER = ("runworker", "--block-ms", "200")

CONFIGURE = """
from trading.models import Instrument, StrategyInstrument, Strategy
for root, contract in {fronts!r}.items():
    Instrument.objects.filter(root=root).update(active_contract=contract)
for name, roots in {roots!r}.items():
    legs = StrategyInstrument.objects.filter(strategy__name=name)
    legs.exclude(instrument__root__in=roots).update(enabled=False)
    legs.update(ml_enabled=False)
    Strategy.objects.filter(name=name).update(daily_stop_loss=10**8, enabled=True)
"""


def generate_market(out, days: int = 6):
    """(paths, fronts, CME days per root) of a generated market of every root the two strategies trade."""
    roots = sorted(r for rs in ROOTS.values() for r in rs)
    paths = generate(out, roots=roots, start=START, days=days, seed=5, roll_day=20, trades_per_minute=3.0)
    fronts = {root: front_month(root, START) for root in roots}
    return paths, fronts, {root: len(expected_bars(paths[root], fronts[root])["1d"]) for root in roots}


class Bridge:
    """The network of a test: its hosts, a Redis of its own on the bridge, PostgreSQL forwarded to it."""

    def __init__(self, tmp, hosts: list[str]):
        self.network = Network(hosts).up()
        self.desks: list[ProcessEnv] = []  # every environment attached (desks and others)
        try:
            self.redis_port, self.pg_port = free_port(), free_port()
            (tmp / "redis").mkdir()
            self.network.serve("redis-server", "--bind", self.network.address, "--port", str(self.redis_port),
                               "--dir", str(tmp / "redis"), "--protected-mode", "no", "--save", "")
            self.network.forward(self.pg_port, 5432)
            self.redis_url = f"redis://{self.network.address}:{self.redis_port}/0"
            wait_until(lambda: redis.Redis.from_url(self.redis_url).ping(), 20, "Redis on the bridge")
        except BaseException:
            self.network.down()
            raise

    def desk(self, tmp, market, **kwargs) -> "Desk":
        return Desk(tmp, self, market, **kwargs)

    def attach(self, env: ProcessEnv) -> ProcessEnv:
        """`env`'s database made (a copy of the demo template) and, like its Redis, reached over the bridge from
        now on; its processes start on the bridge's hosts (netns.start_on) and stop with it."""
        env.network, env.procs = self.network, getattr(env, "procs", {})
        if env not in self.desks:
            self.desks.append(env)
        env.env["REDIS_URL"] = self.redis_url
        if env.pg_db is None:  # the suite on SQLite: a PostgreSQL database of its own, made here
            env.pg_db = f"pineops_desk_{uuid.uuid4().hex[:10]}"
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {env.pg_db}"],
                           check=True, capture_output=True)
            env.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{env.pg_db}"
            env.manage("migrate", "--no-input", "-v0")
            env.manage("load_demo")
        else:
            env.migrate_with_demo()  # a copy of the suite's demo template, through 127.0.0.1
        env.env["DATABASE_URL"] = f"postgres://postgres@{self.network.address}:{self.pg_port}/{env.pg_db}"
        return env

    def down(self) -> None:
        """Every desk's processes first (nothing talks to a stand-in as it stops), then the network."""
        for desk in self.desks:
            if hasattr(desk, "env"):  # (a desk whose set-up failed before its environment was made)
                desk.cleanup()
        self.network.down()
        for desk in self.desks:
            if isinstance(desk, Desk):
                desk.gateway.stop()
                desk.broker.stop()


class Desk(ProcessEnv):
    """One appliance's data and stand-ins: its processes run on any host of the bridge (`on`)."""

    def __init__(self, tmp, bridge: Bridge, market, *, speed: float, extra_env: dict | None = None,
                 model_positions: bool = True):
        paths, self.fronts, self.days = market
        tmp.mkdir(parents=True, exist_ok=True)
        network = bridge.network
        self.network, self.procs, self.bridge = network, {}, bridge
        self.gateway = LiveGateway(list(paths.values()), key=KEY, heartbeat_interval=0.2, speed=speed)
        self.gateway.start()
        self.broker = TradersPostStandIn(model_positions=model_positions).start()
        bridge.desks.append(self)  # stopped with the bridge from here on
        gw, tp = (network.forward(free_port(), port) for port in (self.gateway.port, self.broker.port))
        token = uuid.uuid4().hex[:8]
        super().__init__(tmp, {
            "REDIS_URL": bridge.redis_url,
            "DATABENTO_API_KEY": KEY, "DATABENTO_GATEWAY": f"{network.address}:{gw}",
            "TRADERSPOST_IBS_A_WEBHOOK": remember_secret(f"http://{network.address}:{tp}/trading/webhook/a-{token}"),
            "TRADERSPOST_IBS_B_WEBHOOK": remember_secret(f"http://{network.address}:{tp}/trading/webhook/b-{token}"),
            "DISCORD_WEBHOOK_URL": remember_secret(f"http://{network.address}:9/api/webhooks/22/{token}"),
            "PINEOPS_TRADERSPOST_RATE_LIMITS": "{}/{}".format(*TradingRun.RATE_LIMITS),
            "PINEOPS_MARKET_CLOCK": "data", "LOG_LEVEL": "INFO", **(extra_env or {}),
        })
        bridge.attach(self)
        self.shell(CONFIGURE.format(fronts=self.fronts, roots=ROOTS))
        self.client = redis.Redis.from_url(bridge.redis_url, decode_responses=True)

    # --- processes ---------------------------------------------------------------------------------
    def on(self, host: str, name: str, *args: str, **kwargs):
        return start_on(self, host, name, *args, **kwargs)

    def worker(self, host: str, strategy: str, name: str | None = None):
        return self.on(host, name or f"worker-{strategy}-{host}", *WORKER, "--strategy", strategy)

    def holder(self, strategy: str) -> str:
        return self.client.get(f"{self.redis_prefix}:lock:worker:{strategy}") or ""

    def wait_holding(self, strategy: str, host: str, timeout: float = 60) -> None:
        wait_until(lambda: self.holder(strategy).startswith(f"host-{host}:"), timeout, f"host {host} holding {strategy}")

    # --- state -------------------------------------------------------------------------------------
    CURSORS = ("SELECT s.name, c.last_bar_ms FROM trading_workercursor c JOIN trading_strategy s ON s.id = c.strategy_id"
               " WHERE s.enabled")
    OUTSTANDING = "SELECT COUNT(*) FROM trading_signal WHERE state IN ('pending', 'sending')"

    def last_hour(self, strategy: str) -> int:
        return max(int(self.client.xrevrange(f"{self.redis_prefix}:bars:{r}:1h", count=1)[0][0].split("-")[0])
                   for r in ROOTS[strategy])

    def replayed(self) -> bool:
        return all(self.client.xlen(f"{self.redis_prefix}:bars:{r}:1d") >= n for r, n in self.days.items())

    def caught_up(self) -> bool:
        """The replay is over, every worker has decided its last hour, no order is outstanding."""
        if not self.replayed():
            return False
        cursors = dict(self.query(self.CURSORS))
        return set(cursors) == set(ROOTS) and all(cursors[s] >= self.last_hour(s) for s in ROOTS) \
            and self.query(self.OUTSTANDING) == [(0,)]

    def orders(self) -> list[tuple]:
        """Every order TradersPost accepted, as (strategy, ticker, action, quantity, bar time)."""
        return [(o["extras"]["strategy"], o["ticker"], o["action"], o["quantity"], o["extras"]["bar_time"][:19])
                for o in self.broker.orders()]

    def backtest(self, strategy: str) -> tuple[list, list]:
        """(buys, exits) the backtest of the published bars decides for `strategy`, by root, as `received`."""
        frames = hourly_frames(self.client, self.redis_prefix, ROOTS[strategy])
        legs = [Leg(r, f, IBSParams(), float(CONTRACT_SPECS[r].point_value),
                    float(DEMO_COMMISSION.get(r, Decimal("1.25"))), contracts=f.attrs.get("contracts"),
                    held=f.attrs.get("held")) for r, f in frames.items()]
        result = run(legs, max_positions=MAX_POSITIONS[strategy], use_ml=False)
        buys = sorted([(t["symbol"], t["signal_time"][:19]) for t in result.trades]
                      + [(p["symbol"], p["signal_time"][:19]) for p in result.pending_entries])
        exits = sorted((t["symbol"], t["exit_signal_time"][:19], t["exit_decided"]) for t in result.trades
                       if t["exit_reason"] != "end_of_data" or t["exit_decided"] != "end_of_data")
        return buys, exits


def by_strategy(orders: list[dict], strategy: str) -> list[dict]:
    return [o for o in orders if o["extras"]["strategy"] == strategy]


def twice(orders: list[dict]) -> int:
    """Orders posted more than once (by signal id)."""
    return sum(n - 1 for n in Counter(o["extras"]["signal_id"] for o in orders).values())


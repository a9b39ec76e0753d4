"""Shared pieces of the multi-process trading tests: the strategy set-up and what the backtest expects."""
from decimal import Decimal

import pandas as pd
import redis

from strategies.backtest import Leg, run
from strategies.bars import Bar, frame_from_bars
from strategies.instruments import CONTRACT_SPECS, DEMO_COMMISSION
from strategies.params import IBSParams
from tests.desk import order_root
from tests.e2e.appliance import ProcessEnv, wait_until
from trading.sim.gateway import LiveGateway
from trading.sim.traderspost import TradersPostStandIn


def configure_ibs_a(env, fronts: dict[str, str]) -> None:
    """ibs_a trades only `fronts`' roots, from those contracts, without ML and without a daily stop
    (the backtest has neither; both have their own tests)."""
    roots = sorted(fronts)
    env.shell("from trading.models import Instrument, StrategyInstrument, Strategy\n"
              + "\n".join(f"Instrument.objects.filter(root='{r}').update(active_contract='{c}')" for r, c in fronts.items())
              + f"\nStrategyInstrument.objects.filter(strategy__name='ibs_a').exclude(instrument__root__in={roots!r})"
                ".update(enabled=False)"
              + "\nStrategyInstrument.objects.filter(strategy__name='ibs_a').update(ml_enabled=False)"
              + "\nStrategy.objects.filter(name='ibs_a').update(daily_stop_loss=10**8)")


def hourly_frames(client, prefix: str, roots) -> dict[str, pd.DataFrame]:
    """Each root's hourly bars as published; `attrs` keeps what the backtest needs for rolls: the contract
    of each bar and the bars each contract rolled from got on its own stream (strategies.rolls)."""
    out = {}
    for root in roots:
        bars = [Bar.from_message(f["bar"]) for _, f in client.xrange(f"{prefix}:bars:{root}:1h")]
        frame = out[root] = frame_from_bars(bars)
        frame.attrs["contracts"] = tuple(b.contract for b in bars)
        frame.attrs["held"] = {c: frame_from_bars([Bar.from_message(f["bar"]) for _, f in
                                                   client.xrange(f"{prefix}:bars:{c}:1h")])
                               for c in dict.fromkeys(b.contract for b in bars)
                               if client.exists(f"{prefix}:bars:{c}:1h")}
    return out


class TradingRun:
    """Local gateway → runhub → runworker → TradersPost stand-in, as separate processes.

    `with TradingRun(...) as run:` starts everything; `run.wait_caught_up()` waits until the replay
    is done and the worker has decided the last hour with no order outstanding; the way out stops
    every process and removes the database and Redis keys.
    """

    STATE = ("SELECT (SELECT MIN(c.last_bar_ms) FROM trading_workercursor c JOIN trading_strategy s"
             " ON s.id = c.strategy_id WHERE s.enabled), (SELECT COUNT(*) FROM trading_workercursor c"
             " JOIN trading_strategy s ON s.id = c.strategy_id WHERE s.enabled),"
             " (SELECT COUNT(*) FROM trading_signal WHERE state IN ('pending', 'sending'))")
    SUMMARY = ("import json; from trading.models import Trade, Signal, Position\n"
               "print(json.dumps({'trades': [[t.symbol, t.entry_time.isoformat(), float(t.entry_price),"
               " t.exit_time.isoformat(), float(t.exit_price), t.exit_reason, str(t.pnl)]"
               " for t in Trade.objects.filter(strategy__name='{name}').order_by('exit_time', 'symbol')],"
               " 'ambiguous': list(Signal.objects.filter(state='failed').values_list('key', 'state_reason')),"
               " 'open': sorted(Position.objects.managed().filter(strategy__name='{name}')"
               ".values_list('instrument__root', flat=True))}))")
    # ibs_a_paper: ibs_a's copy in paper mode, without a webhook, run by its own worker beside ibs_a's.
    PAPER = ("from trading.models import Strategy\n"
             "live = Strategy.objects.get(name='ibs_a'); legs = list(live.legs.all())\n"
             "paper = live; paper.pk = None; paper.name = 'ibs_a_paper'; paper.mode = 'paper'; paper.broker_webhook = ''\n"
             "paper.full_clean(); paper.save()\n"
             "for leg in legs:\n"
             "    leg.pk = None; leg.strategy = paper; leg.save()")

    # The rate limit of every run: 30 orders in 2 s throttles a fast replay's bursts as 60 a minute throttles a
    # live day (tests/execution/test_ratelimit.py holds the default), without a minute's wait per 60 orders.
    RATE_LIMITS = (30, 2.0)

    def __init__(self, tmp_path, paths: dict, fronts: dict, days: dict, *, key: str, speed=None, block_ms=200,
                 redis_url: str = "redis://127.0.0.1:6379/0", extra_env: dict | None = None, configure: str = "",
                 faults=None, paper_beside: bool = False):
        self.tmp, self.key, self.fronts, self.days, self.roots, self.block_ms = (tmp_path, key, fronts, days,
                                                                            sorted(fronts), block_ms)
        self.gateway = LiveGateway(list(paths.values()), key=key, heartbeat_interval=0.2, speed=speed, faults=faults)
        self.broker = TradersPostStandIn()
        self.workers = 0
        self.redis_url = redis_url
        self.extra_env = extra_env or {}
        self.configure = configure  # Django shell code run after ibs_a is set up, before its worker starts
        self.paper_beside = paper_beside
        self.paper_worker = None
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)

    def __enter__(self):
        tmp = self.tmp
        self.gateway.start()
        self.broker.start()
        self.env = ProcessEnv(tmp, {
            "DATABENTO_API_KEY": self.key, "DATABENTO_GATEWAY": f"127.0.0.1:{self.gateway.port}",
            "TRADERSPOST_IBS_A_WEBHOOK": f"{self.broker.url}/trading/webhook/e2e-secret-token",
            "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/unused", "REDIS_URL": self.redis_url,
            "PINEOPS_TRADERSPOST_RATE_LIMITS": "{}/{}".format(*self.RATE_LIMITS), **self.extra_env})
        self.prefix = self.env.redis_prefix
        try:
            self.env.migrate_with_demo()
            configure_ibs_a(self.env, self.fronts)
            if self.configure:
                self.env.shell(self.configure)
            if self.paper_beside:
                self.env.shell(self.PAPER)
                self.paper_worker = self.env.spawn("runworker", "--strategy", "ibs_a_paper", "--block-ms",
                                                   str(self.block_ms), log_name="worker-paper.log")
            self.start_worker()
            for name, proc, log in [("ibs_a", self.worker, "worker-0.log")] + \
                    ([("ibs_a_paper", self.paper_worker, "worker-paper.log")] if self.paper_worker else []):
                wait_until(lambda: (tmp / f"{name}_worker_heartbeat.json").exists() or proc.poll() is not None, 60,
                           f"worker {name} up")
                assert proc.poll() is None, (tmp / log).read_text()[-3000:]
            self.hubs = 0
            self.start_hub()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start_worker(self):
        self.worker = self.env.spawn("runworker", "--strategy", "ibs_a", "--block-ms", str(self.block_ms),
                                     log_name=f"worker-{self.workers}.log")
        self.workers += 1
        return self.worker

    def start_hub(self):
        self.hub = self.env.spawn("runhub", "--heartbeat", "0.5", log_name=f"hub-{self.hubs}.log" if self.hubs else "hub.log")
        self.hubs += 1
        return self.hub

    def replay_done(self) -> bool:
        return all(self.client.xlen(f"{self.prefix}:bars:{r}:1d") >= self.days[r] for r in self.roots)

    def wait_caught_up(self) -> None:
        wait_until(self.replay_done, 240, "hub replayed the data")
        last = max(int(self.client.xrevrange(f"{self.prefix}:bars:{r}:1h", count=1)[0][0].split("-")[0])
                   for r in self.roots)
        workers = 2 if self.paper_worker else 1
        wait_until(lambda: self.env.query(self.STATE) == [(last, workers, 0)], 240,
                   "workers caught up, no order outstanding")
        assert self.worker.poll() is None and self.hub.poll() is None
        assert self.paper_worker is None or self.paper_worker.poll() is None

    def frames(self) -> dict[str, pd.DataFrame]:
        return hourly_frames(self.client, self.prefix, self.roots)

    def summary(self, strategy: str = "ibs_a") -> dict:
        """`strategy`'s trades and open positions, and every failed (possibly ambiguous) signal, from the database."""
        return self.env.shell_json(self.SUMMARY.replace("{name}", strategy))

    def __exit__(self, *exc):
        for name in ("hub", "worker", "paper_worker"):
            proc = getattr(self, name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(60)
        self.gateway.stop()
        if hasattr(self, "env"):
            self.env.cleanup()
        self.broker.stop()


class Expected:
    """The backtest of the same bars, as orders and trades (ibs_a's demo terms, max 2 positions; rolls with
    a position open as the demo's roll policy decides: exit on the old contract's first bar after it)."""

    def __init__(self, frames: dict[str, pd.DataFrame]):
        legs = [Leg(r, f, IBSParams(), float(CONTRACT_SPECS[r].point_value),
                    float(DEMO_COMMISSION.get(r, Decimal("1.25"))), contracts=f.attrs.get("contracts"),
                    held=f.attrs.get("held")) for r, f in frames.items()]
        self.result = run(legs, max_positions=2, use_ml=False)
        self.trades = self.result.trades
        self.closed = [t for t in self.trades if t["exit_reason"] != "end_of_data"]
        self.buys = sorted([(t["symbol"], t["signal_time"][:19]) for t in self.trades]
                           + [(p["symbol"], p["signal_time"][:19]) for p in self.result.pending_entries])
        self.exits = sorted((t["symbol"], t["exit_signal_time"][:19], t["exit_decided"]) for t in self.trades
                            if t["exit_reason"] != "end_of_data" or t["exit_decided"] != "end_of_data")
        self.open_at_end = sorted([t["symbol"] for t in self.trades if t["exit_reason"] == "end_of_data"]
                                  + [p["symbol"] for p in self.result.pending_entries])


def busiest_window(times: list[float], seconds: float) -> int:
    """The most of `times` (s) inside any window of `seconds`."""
    times, most, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def received(orders: list[dict]) -> tuple[list, list, int]:
    """(buys, exits, duplicate posts) of what the TradersPost stand-in got, by root (tickers name contracts)."""
    keys = [o["extras"]["signal_id"] for o in orders]
    buys = sorted((order_root(o), o["extras"]["bar_time"][:19]) for o in orders if o["action"] == "buy")
    exits = sorted((order_root(o), o["extras"]["bar_time"][:19], o["extras"]["reason"]) for o in orders
                   if o["action"] == "exit")
    return buys, exits, len(keys) - len(set(keys))

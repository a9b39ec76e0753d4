"""Market-data hub throughput: records/s into bars, beside the raw databento client on the same data.

Synthetic DBN trades (trading.sim.market) are replayed as fast as possible by the local Live
gateway (trading.sim.gateway), run in its own process as Databento's servers are, to the official
`databento.Live` client in this process, in turns, each turn repeated (`--repeat`):
  raw (live)  the reference: a callback that only counts records (the client decodes each one);
  hub (live)  what runhub runs: the client's socket reads cut into blocks of trades
              (trading.marketdata.rawfeed), a RecordFeed, this thread taking them in batches into
              `Hub.process_many` (fronts built as runhub builds them), bars published to real Redis
              Streams through trading.marketdata.streams, hourly and daily bars to the bar store (a
              throw-away SQLite database) by its writer thread (trading.marketdata.storewriter);
  hub (live, per record)  the same with the client's callback per record, the path blocks replace.
More runs feed the hub the same records decoded from the files beforehand (no network), the
hub's own ceiling: hub (file) publishing to Redis, hub (no redis) accepting bars unwritten, and
hub per record (no redis), `Hub.process` one record at a time, the path the batches replace.
Timing runs from the first data record (symbol mapping or trade; the subscription's acknowledgement, which
comes before the gateway has its data ready, starts no clock) to the last one; for the hub, until every bar the
records closed is written, to Redis and to the bar store. The gateway's end-of-data heartbeat, a beat after its
last write, ends a session; the hub then closes its last bars, untimed.
The live side (gateway process, client, raw reference) is bench/hub_gateway.py.
Redis keys go under a throw-away `pineops-bench-<uuid>` prefix and are deleted at the end.
Target: hub (live) at least 0.9 of the raw rate. The script prints numbers and the load average; it
asserts no timing.
Run: .venv/bin/python bench/hub_throughput.py [--days 10] [--roots CL,ES] [--trades-per-minute 24] [--repeat 5]
"""
from __future__ import annotations

import argparse
import heapq
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import databento as db  # noqa: E402
import databento_dbn as dbn  # noqa: E402
from databento import DBNRecord as Record  # noqa: E402

from bench.common import configure_environment, delete_keys, load_average, throwaway_prefix  # noqa: E402
from bench.hub_gateway import Session, close, gateway_process, live_session, subscribe  # noqa: E402
from trading.marketdata.live import RecordFeed  # noqa: E402
from trading.marketdata.hubbatch import TRADE_BYTES  # noqa: E402
from trading.marketdata.roll import FrontMonth  # noqa: E402
from trading.sim.market import front_month, generate  # noqa: E402

HOUR_NS = 3600 * 1_000_000_000


@dataclass
class Result:
    run: str
    records: int
    seconds: float
    bars: int = 0
    counters: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Report:
    results: list[Result]
    trades: int  # trade records in the files
    mappings: int  # one symbol mapping per instrument, as the gateway sends them
    ratios: list[float] = field(default_factory=list)  # hub (live) / raw (live) of each turn
    load: tuple[float, float] = (0.0, 0.0)  # load average at the start and at the end

    def get(self, run: str) -> Result:
        return next(r for r in self.results if r.run == run)

    @property
    def ratio(self) -> float:
        return self.get("hub (live)").rate / self.get("raw (live)").rate


def setup_django() -> None:
    """Settings for the streams code (REDIS_URL, REDIS_PREFIX) and a bar store: run as a script, a throw-away
    SQLite database, migrated, removed at exit; inside the test suite, its test database."""
    import atexit
    import shutil

    from django.apps import apps

    if not apps.ready:
        runtime = Path(tempfile.mkdtemp(prefix="hub-bench-db-"))
        atexit.register(shutil.rmtree, runtime, True)
        configure_environment(runtime, f"sqlite:///{runtime / 'bench.sqlite3'}", throwaway_prefix())
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)


def front_contract(root: str, start: date) -> str:
    """The front month the generator trades most at the start of a span."""
    return front_month(root, start)


def make_hub(roots: list[str], start: date, *, redis: bool = True) -> tuple:
    """A hub with fronts as runhub builds them (Instrument defaults), publishing to Redis Streams with its
    hourly and daily bars going to the bar store as runhub stores them (or, with redis=False, accepting
    every bar without writing it anywhere), the call that waits until every bar handed over is written
    (to both), and the call that ends the bar store's writer."""
    from trading.marketdata import streams
    from trading.marketdata.hub import Hub
    from trading.marketdata.storewriter import BarStoreWriter
    from trading.models import StoredBar

    fronts = {root: FrontMonth(root, "volume", 5, front_contract(root, start)) for root in roots}
    if not redis:
        hub = Hub(fronts, publish=lambda bar: None)
        return hub, hub.flush, lambda: None
    StoredBar.objects.filter(source="hub").delete()  # each run writes its bars afresh
    store = BarStoreWriter()
    publisher = streams.BarPublisher(on_fresh=store.put)
    hub = Hub(fronts, publish=publisher.add, flush=publisher.send, on_watermark=publisher.watermark)
    publisher.on_duplicate = hub.duplicate

    def written() -> None:
        publisher.flush()  # waits for Redis's answer to the last call
        if not store.drain(120):
            raise TimeoutError("the bar store's writer did not finish")

    return hub, written, store.close


def records_in(items) -> int:
    """Data records among a feed's items (a bytes block holds many trades; system messages are not counted)."""
    return sum(len(i) // TRADE_BYTES if type(i) is bytes else 0 if isinstance(i, dbn.SystemMsg) else 1 for i in items)


def bars_of(hub) -> int:
    return sum(hub.counters[f"bars_{tf}"] for tf in ("1m", "1h", "1d"))


def hub_live(port: int, roots: list[str], start: date, timeout: float, *, expected: int, blocks: bool = True) -> Result:
    """The hub as runhub runs it (live.run_live's loop): socket reads → trade blocks and records → RecordFeed
    → process_many, a flush whenever the feed is drained; timed until its `expected` data records (the files'
    trades and mappings) are processed and every bar they closed is written, as the run from the files is. The
    gateway sends its end-of-data heartbeat a beat after its last write, which a hub that keeps up would wait for:
    it ends the session, and the bars it closes (each root's last minute, hour and day) are written untimed.
    `blocks=False`: the client's callback per record instead."""
    hub, written, close_store = make_hub(roots, start)
    feed = RecordFeed()
    client = subscribe(port, roots, feed.put, feed.put_block if blocks else None)
    records, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while True:
            batch = feed.take(timeout=0.25)
            if not first and records_in(batch):  # as the raw session's clock: from the first data record
                first = time.perf_counter()
            heartbeats = hub.counters["system"]
            hub.process_many(batch)
            if hub.counters["gateway_errors"]:
                raise RuntimeError("the gateway sent an error (logged above)")
            ended = hub.counters["system"] > heartbeats  # the end-of-data heartbeat was in this batch
            if not last:
                end = next(i for i, rec in enumerate(batch) if isinstance(rec, dbn.SystemMsg) and rec.is_heartbeat()) \
                    if ended else len(batch)
                records += records_in(batch[:end])  # not the acknowledgement
                if records >= expected or ended:
                    written()
                    last = time.perf_counter()
            if ended:
                break
            if feed.empty():
                hub.flush()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no end-of-data heartbeat within {timeout:.0f}s ({records:,} records)")
    finally:
        close(client)
    hub.flush_closed()
    written()
    close_store()
    return Result("hub (live)" if blocks else "hub (live, per record)", records, last - first, bars_of(hub),
                  hub.counters)


def file_records(paths: dict[str, Path]) -> list[Record]:
    """The gateway's stream, decoded from the files: records of all roots merged by time, each
    instrument's symbol mapping sent before its first record."""
    stores = {root: db.DBNStore.from_file(path) for root, path in paths.items()}
    symbols: dict[int, tuple[str, str]] = {}
    for root, store in stores.items():
        for raw, intervals in store.mappings.items():
            for interval in intervals:
                symbols[int(interval["symbol"])] = (f"{root}.FUT", raw)
    merged: Iterator[Record] = heapq.merge(*(iter(store) for store in stores.values()), key=lambda r: r.ts_event)
    out: list[Record] = []
    mapped: set[int] = set()
    for rec in merged:
        if rec.instrument_id not in mapped:
            mapped.add(rec.instrument_id)
            parent, raw = symbols[rec.instrument_id]
            out.append(dbn.SymbolMappingMsg(1, rec.instrument_id, rec.ts_event, dbn.SType.PARENT, parent,
                                            dbn.SType.RAW_SYMBOL, raw, rec.ts_event, 2**63 - 1))
        out.append(rec)
    return out


def end_of_data(last_ts: int) -> Record:
    """The heartbeat the gateway sends when its data has ended (its clock an hour on)."""
    return dbn.SystemMsg(last_ts + HOUR_NS, "Heartbeat", code=dbn.SystemCode.HEARTBEAT)


def hub_from_records(records: list[Record], roots: list[str], start: date, last_ts: int, *,
                     redis: bool = True, batched: bool = True) -> Result:
    """The hub fed from memory: in the feed's batches (`process_many`) or one record at a time."""
    hub, written, close_store = make_hub(roots, start, redis=redis)
    size = RecordFeed().batch
    started = time.perf_counter()
    if batched:
        for i in range(0, len(records), size):
            hub.process_many(records[i:i + size])
    else:
        process = hub.process
        for rec in records:
            process(rec)
    written()
    seconds = time.perf_counter() - started
    hub.process(end_of_data(last_ts))
    hub.flush_closed()
    written()
    close_store()
    name = "hub (file)" if redis else "hub (no redis)" if batched else "hub per record (no redis)"
    return Result(name, len(records), seconds, bars_of(hub), hub.counters)


def redis_prefix(prefix: str):
    from django.test.utils import override_settings

    return override_settings(REDIS_PREFIX=prefix)


def best(results: list[Result]) -> Result:
    return max(results, key=lambda r: r.rate)


def run(*, roots: list[str], start: date, days: int, trades_per_minute: float, seed: int = 7, repeat: int = 1,
        file_run: bool = True, timeout: float = 300.0, prefix: str | None = None,
        log: Callable[[str], None] = lambda line: None) -> Report:
    """Generate the data, run every measurement (best of `repeat`), delete the Redis keys written
    under `prefix` (default: a fresh `pineops-bench-<uuid>`); returns the results."""
    setup_django()
    base = prefix or throwaway_prefix()
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        started = time.perf_counter()
        paths = generate(Path(tmp), roots=roots, start=start, days=days, seed=seed,
                         trades_per_minute=trades_per_minute)
        records = file_records(paths)
        trades = sum(1 for r in records if isinstance(r, dbn.TradeMsg))
        last_ts = max(r.ts_event for r in records)
        log(f"generated {trades:,} trades in {len(paths)} file(s) in {time.perf_counter() - started:.1f}s")
        raw_runs: list[Result] = []
        hub_runs: list[Result] = []
        record_runs: list[Result] = []
        file_runs: list[Result] = []
        bare_runs: list[Result] = []
        single_runs: list[Result] = []
        ratios: list[float] = []
        load_start = load_average()
        try:
            with gateway_process(list(paths.values())) as port:
                for attempt in range(repeat):  # each turn: the reference, then the subjects, interleaved
                    s = live_session(port, roots, Session(), timeout)
                    raw_runs.append(Result("raw (live)", s.records, s.seconds))
                    with redis_prefix(f"{base}-live{attempt}"):
                        hub_runs.append(hub_live(port, roots, start, timeout, expected=len(records)))
                    ratios.append(hub_runs[-1].rate / raw_runs[-1].rate)
                    with redis_prefix(f"{base}-records{attempt}"):
                        record_runs.append(hub_live(port, roots, start, timeout, expected=len(records), blocks=False))
                    if file_run:
                        with redis_prefix(f"{base}-file{attempt}"):
                            file_runs.append(hub_from_records(records, roots, start, last_ts))
                        bare_runs.append(hub_from_records(records, roots, start, last_ts, redis=False))
                        single_runs.append(hub_from_records(records, roots, start, last_ts, redis=False,
                                                            batched=False))
        finally:
            delete_keys(base)
    results = [best(runs) for runs in (raw_runs, hub_runs, record_runs, file_runs, bare_runs, single_runs) if runs]
    return Report(results, trades=trades, mappings=len(records) - trades, ratios=ratios,
                  load=(load_start, load_average()))


def print_report(report: Report, out=sys.stdout) -> None:
    hub = report.get("hub (live)")
    per_bar = f"; {hub.records / hub.bars:.1f} records per bar" if hub.bars else ""
    print(f"data: {report.trades:,} trades + {report.mappings} symbol mappings{per_bar}; "
          "gateway replays as fast as possible", file=out)
    print(f"{'run':<28}{'records':>10}{'seconds':>10}{'records/s':>14}{'bars':>10}", file=out)
    for r in report.results:
        print(f"{r.run:<28}{r.records:>10,}{r.seconds:>10.2f}{r.rate:>14,.0f}{r.bars:>10,}", file=out)
    turns = ", ".join(f"{r:.2f}" for r in report.ratios)
    median = statistics.median(report.ratios) if report.ratios else float("nan")
    print(f"hub/raw: {report.ratio:.2f} best against best, {median:.2f} the median turn (target >= 0.90); "
          f"turn by turn: {turns}", file=out)
    print(f"load average {report.load[0]:.2f} at the start, {report.load[1]:.2f} at the end "
          f"({os.cpu_count()} CPUs)", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", default="CL,ES", help="comma-separated roots, one DBN file each")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 10, 26), help="first trade date")
    parser.add_argument("--days", type=int, default=10, help="calendar days of data")
    parser.add_argument("--trades-per-minute", type=float, default=24.0, help="mean trades per minute and root")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="run each measurement N times, report the best")
    parser.add_argument("--no-file-run", action="store_true", help="skip the hub runs fed from the files")
    parser.add_argument("--verbose", action="store_true", help="keep the client's, gateway's and hub's INFO logs")
    args = parser.parse_args(argv)
    if not args.verbose:
        for name in ("databento", "trading"):
            logging.getLogger(name).setLevel(logging.WARNING)
    report = run(roots=[r.strip().upper() for r in args.roots.split(",") if r.strip()], start=args.start,
                 days=args.days, trades_per_minute=args.trades_per_minute, seed=args.seed,
                 repeat=max(1, args.repeat), file_run=not args.no_file_run, log=print)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

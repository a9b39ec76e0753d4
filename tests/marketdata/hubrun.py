"""An in-process hub over DBN files, records in the order a gateway would send them: the bars it
publishes and the rolls it makes (no network, no Redis): what the bar store and the roll tests
compare against."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import databento_dbn as dbn

from trading.marketdata.dbnfile import read_records
from trading.marketdata.definitions import companion_path
from trading.marketdata.hub import Hub
from trading.marketdata.roll import FrontMonth

FAR = 2**62  # ns: a heartbeat after everything, so every bar closes


@dataclass
class HubRun:
    hub: Hub
    bars: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))  # stream → tf → [Bar]
    rolls: list = field(default_factory=list)


def feed(paths, fronts: dict[str, FrontMonth], batch: int = 8192) -> HubRun:
    """Definitions (from each file's companion) and trades of `paths`, merged in time order with a
    symbol mapping before each instrument's first record, through `Hub.process_many`."""
    records, seen, symbols = [], set(), {}
    for path in paths:
        for p in (path, companion_path(path)):
            if p is None or p in seen:
                continue
            seen.add(p)
            reading = read_records(p)
            symbols.update(reading.symbols)
            records += [(r.ts_event, 0 if isinstance(r, dbn.InstrumentDefMsg) else 1, r) for r in reading.records]
    records.sort(key=lambda x: (x[0], x[1]))
    run = HubRun(None)
    run.hub = Hub(fronts, publish=lambda bar: run.bars[bar.stream][bar.timeframe].append(bar),
                  on_roll=run.rolls.append)
    mapped, stream = set(), []
    for ts, _, rec in records:
        if rec.instrument_id not in mapped and not isinstance(rec, dbn.InstrumentDefMsg):
            mapped.add(rec.instrument_id)
            raw = symbols.get(rec.instrument_id, "")
            root = max((r for r in fronts if raw.startswith(r)), key=len, default="?")  # as a parent subscription maps it
            stream.append(dbn.SymbolMappingMsg(1, rec.instrument_id, ts, dbn.SType.PARENT, f"{root}.FUT",
                                               dbn.SType.RAW_SYMBOL, raw, ts, 2**63 - 1))
        stream.append(rec)
        if len(stream) >= batch:
            run.hub.process_many(stream)
            stream = []
    run.hub.process_many(stream)
    run.hub.process(dbn.SystemMsg(FAR, "Heartbeat", code=dbn.SystemCode.HEARTBEAT))
    return run

"""`Hub.process_many` (numpy over runs of trades) must leave exactly what `Hub.process` record by
record leaves: the same bars in the same order, counters, rolls, clocks and open minutes.

The streams are random but hold everything that sends the batch path back to the per-record one:
trades a little out of order (within a minute and across minutes), trades into minutes already
built, session boundaries with the daily halt and a weekend, a roll, back months, spreads,
unknown and unmapped instruments, bad prices and times, heartbeats and symbol mappings arriving
mid-stream.
"""
import random
from datetime import datetime, timezone

import databento_dbn as dbn
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading.marketdata.hub import Hub
from trading.marketdata.hubbatch import ONE_BY_ONE
from trading.marketdata.roll import FrontMonth

NS = 10**9
MIN = 60 * NS
START = int(datetime(2026, 11, 5, 20, 0, tzinfo=timezone.utc).timestamp()) * NS  # Thursday 14:00 CT
# instrument id → raw symbol; 1..4 CL, 5..7 ES, then a spread, an unknown root
SYMBOLS = {1: "CLZ6", 2: "CLF7", 3: "CLG7", 5: "ESZ6", 6: "ESH7", 8: "CLZ6-CLF7", 9: "ZZZ9"}
UNMAPPED = 42


def mapping(iid: int, ts: int):
    parent = SYMBOLS[iid][:2] + ".FUT" if iid != 9 else "ZZZ.FUT"  # as a parent subscription maps them
    return dbn.SymbolMappingMsg(1, iid, ts, dbn.SType.PARENT, parent, dbn.SType.RAW_SYMBOL, SYMBOLS[iid], ts, ts)


def trade(iid: int, ts: int, price: int, size: int):
    return dbn.TradeMsg(1, iid, ts, price, size, dbn.Action.TRADE, dbn.Side.BID, 0, ts, flags=0x80)


def heartbeat(ts: int):
    return dbn.SystemMsg(ts, "Heartbeat", code=dbn.SystemCode.HEARTBEAT)


def stream(seed: int, hours: float = 30.0, rate: float = 20.0) -> list:
    """A random record stream over `hours` of exchange time from Thursday afternoon (so it crosses
    the 16:00–17:00 CT halt and, if long enough, the weekend)."""
    rng = random.Random(seed)
    out = [mapping(i, START) for i in (1, 5, 8)]
    late_mapped = {2: START + 3 * 3600 * NS, 3: START + 7 * 3600 * NS, 6: START + 90 * MIN, 9: START + 5 * MIN}
    ts, end = START, START + int(hours * 3600 * NS)
    level = {"CL": 70_000_000_000, "ES": 6_000_000_000_000}
    roll_at = START + int(hours * 0.1 * 3600 * NS)  # from here CLF7 out-trades CLZ6
    while ts < end:
        ts += int(rng.expovariate(rate / MIN))
        for iid, due in list(late_mapped.items()):
            if ts >= due:
                out.append(mapping(iid, ts))
                del late_mapped[iid]
        r = rng.random()
        if r < 0.01:
            out.append(heartbeat(ts + rng.randrange(0, 3 * MIN)))
            continue
        if r < 0.02:  # a jump: the halt or a weekend passes quickly in this stream
            ts += rng.choice((MIN, 30 * MIN, 61 * MIN))
            continue
        root = "CL" if rng.random() < 0.6 else "ES"
        if root == "CL":
            weights = (0.3, 0.6, 0.1) if ts >= roll_at else (0.8, 0.15, 0.05)
            iid = rng.choices((1, 2, 3), weights)[0]
        else:
            iid = rng.choices((5, 6), (0.85, 0.15))[0]
        if iid not in SYMBOLS or any(iid == k for k in late_mapped):
            iid = 1 if root == "CL" else 5
        level[root] += rng.choice((-1, 1)) * rng.randrange(0, 4) * 10_000_000
        price = level[root]
        t = ts
        odd = rng.random()
        if odd < 0.03:
            t = ts - rng.randrange(1, 2 * MIN)  # late: into this minute, the last one or one already built
        elif odd < 0.035:
            price = rng.choice((dbn.UNDEF_PRICE, 0, -5))
        elif odd < 0.037:
            t = dbn.UNDEF_TIMESTAMP
        elif odd < 0.045:
            iid = rng.choice((8, 9, UNMAPPED))
            if iid == 9 and 9 in late_mapped:
                iid = 8
        out.append(trade(iid, max(t, START), price, rng.randrange(1, 20)))
    out.append(heartbeat(end + 2 * 3600 * NS))
    return out


def new_hub():
    published, rolls, marks = [], [], []
    hub = Hub({"CL": FrontMonth("CL", active="CLZ6"), "ES": FrontMonth("ES", active="ESZ6")},
              publish=lambda bar: published.append(bar), on_roll=rolls.append, on_watermark=marks.append)
    return hub, published, rolls, marks


def fronts_volume(hub: Hub) -> dict:
    """Session volume per contract, committed or not (the batch path commits earlier)."""
    out = {}
    for root, s in hub.roots.items():
        volume = dict(s.front.volume)
        for contract, size in s.minute_volume.items():
            volume[contract] = volume.get(contract, 0) + size
        out[root] = {c: v for c, v in volume.items() if v}
    return out


def check_same(records: list, sizes: list[int]) -> tuple:
    one, one_bars, one_rolls, one_marks = new_hub()
    for rec in records:
        one.process(rec)
    many, many_bars, many_rolls, many_marks = new_hub()
    i, k = 0, 0
    while i < len(records):
        n = sizes[k % len(sizes)]
        many.process_many(records[i:i + n])
        i, k = i + n, k + 1
    assert many_bars == one_bars
    assert many_rolls == one_rolls and many_marks == one_marks
    assert many.counters == one.counters
    assert fronts_volume(many) == fronts_volume(one)
    for root in one.roots:
        a, b = one.roots[root], many.roots[root]
        assert (b.closed_through, b.session_end_ns, b.front.active, b.minutes.open_minute, b.minutes._bar,
                b.last_minute) == (a.closed_through, a.session_end_ns, a.front.active, a.minutes.open_minute,
                                   a.minutes._bar, a.last_minute)
    assert (many.clock, many.resume_point(), many.last_bar_time) == (one.clock, one.resume_point(), one.last_bar_time)
    return one, one_bars, one_rolls


def test_a_long_stream_in_big_batches_gives_the_same_bars_rolls_and_counters():
    records = stream(seed=1, hours=80)  # Thursday 14:00 CT to Monday: halts, a weekend, the roll
    one, bars, rolls = check_same(records, [5000, 20_000, 1, 700])
    c = one.counters
    # the stream exercised what it is meant to
    assert {b.timeframe for b in bars} == {"1m", "1h", "1d"} and len(bars) > 1000
    assert [r.to_contract for r in rolls] == ["CLF7"]
    for what in ("back_month_dropped", "spreads_dropped", "bad_price", "bad_time", "unmapped", "unknown_symbol",
                 "out_of_order", "gap_minutes", "system"):
        assert c[what] > 0, what


@pytest.mark.parametrize("seed", range(6))
def test_batches_of_any_size_give_what_one_by_one_gives(seed):
    rng = random.Random(seed)
    records = stream(seed=100 + seed, hours=rng.choice((3, 26)), rate=rng.choice((5.0, 40.0)))
    sizes = [rng.choice((1, 2, ONE_BY_ONE - 1, ONE_BY_ONE, 50, 333, 4096)) for _ in range(20)]
    check_same(records, sizes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), size=st.integers(1, 600), rate=st.sampled_from([2.0, 20.0, 200.0]))
def test_random_streams_and_batch_sizes(seed, size, rate):
    check_same(stream(seed=seed, hours=4, rate=rate), [size])


def test_a_reconnect_replay_in_batches_skips_what_was_built():
    """After `forget_open_minutes`, a replay from the earliest unfinished minute re-sends trades the
    hub has seen; in batches they are skipped (counted) exactly as one by one. The cut is placed
    where a late trade holds a minute open behind another root's built ones, so the replay does
    re-send built minutes."""
    records = stream(seed=7, hours=6)
    probe, _, _, _ = new_hub()
    cut = None
    for i, rec in enumerate(records):
        probe.process(rec)
        resume = probe.resume_point()
        if i > len(records) // 3 and resume is not None and \
                resume < max(s.closed_through for s in probe.roots.values()):
            cut = i + 1
            break
    assert cut is not None, "the stream has no late-opened minute to cut at"
    hubs = []
    for batched in (False, True):
        hub, bars, _, _ = new_hub()
        feed = (lambda recs: hub.process_many(recs)) if batched else (lambda recs: [hub.process(r) for r in recs])
        feed(records[:cut])
        hub.forget_open_minutes()
        resume = hub.resume_point()
        feed([r for r in records if resume <= r.ts_event <= 2**63 - 1])
        hubs.append((hub, bars))
    (one, one_bars), (many, many_bars) = hubs
    assert many_bars == one_bars and many.counters == one.counters
    assert one.counters["replay_skipped"] > 0
    minutes = [(b.symbol, b.ts) for b in one_bars if b.timeframe == "1m"]
    assert len(minutes) == len(set(minutes))  # the replay made no bar twice

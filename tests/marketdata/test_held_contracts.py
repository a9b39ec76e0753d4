"""A contract a position is still open in after its roll: the hub goes on building its bars and publishes
them under the contract's own streams (bars:CLZ6:1h, last:CLZ6), never under the root's, and the batch
path gives exactly what one record at a time gives."""
import random
from datetime import timedelta

import pytest
import redis

from strategies.bars import HeldBar
from strategies.calendar import is_trading, session_end
from tests.marketdata.test_hub_batch import ONE_BY_ONE, heartbeat, stream
from trading.marketdata import streams
from trading.marketdata.hub import Hub
from trading.marketdata.roll import FrontMonth
from trading.redis_client import key


def hour_end(bar):
    return bar.end - timedelta(minutes=1)


def held_hub(hold: dict):
    published, rolls = [], []
    hub = Hub({"CL": FrontMonth("CL", active="CLZ6"), "ES": FrontMonth("ES", active="ESZ6")},
              publish=lambda bar: published.append(bar), on_roll=rolls.append)
    hub.hold(hold)
    return hub, published, rolls


@pytest.fixture(scope="module")
def week():
    """80 h from Thursday afternoon: the front of CL rolls from CLZ6 to CLF7 on the way."""
    return stream(seed=1, hours=80)


def test_a_held_contract_has_its_own_bars_after_the_roll_and_the_root_keeps_the_new_front(week):
    hub, published, rolls = held_hub({"CL": {"CLZ6"}})
    for rec in week:
        hub.process(rec)
    (roll,) = rolls
    assert (roll.from_contract, roll.to_contract) == ("CLZ6", "CLF7")
    held = [b for b in published if isinstance(b, HeldBar)]
    front = [b for b in published if not isinstance(b, HeldBar) and b.symbol == "CL"]
    assert {b.timeframe for b in held} == {"1m", "1h"} and hub.counters["held_trades"] > 0
    assert {(b.symbol, b.contract, b.stream) for b in held} == {("CL", "CLZ6", "CLZ6")}
    roll_start = min(b.ts for b in front if b.contract == "CLF7")
    assert min(b.ts for b in held) >= roll_start  # before the roll CLZ6 was the front: the root's own bars
    assert all(b.contract == "CLZ6" for b in front if b.ts < roll_start)
    assert all(b.contract == "CLF7" for b in front if b.ts >= roll_start)  # the root stream: the front only
    minutes = [b for b in held if b.timeframe == "1m"]
    # each held hour of the open market is made of its own minutes (the random stream also trades
    # through the weekend, which splits such hours on the front's path too)
    for hour in (b for b in held if b.timeframe == "1h" and is_trading("CL", hour_end(b))):
        inside = [m for m in minutes if hour.ts <= m.ts < hour.end]
        assert (hour.open, hour.close) == (inside[0].open, inside[-1].close)
        assert (hour.high, hour.low, hour.volume) == (max(m.high for m in inside), min(m.low for m in inside),
                                                      sum(m.volume for m in inside))

    plain, bars, _ = held_hub({})  # no position: the contract rolled from is still kept for the roll's session
    for rec in week:
        plain.process(rec)
    assert [b for b in published if not isinstance(b, HeldBar)] == [b for b in bars if not isinstance(b, HeldBar)]
    session_over = session_end(roll.session_date)
    kept = [b for b in bars if isinstance(b, HeldBar)]
    assert kept and max(b.end for b in kept) <= session_over  # a position the books do not show yet is covered
    assert [b.to_message() for b in kept] == [b.to_message() for b in held if b.end <= session_over]
    assert plain.holding  # released by the next hold() (each heartbeat of runhub), not by itself


@pytest.mark.parametrize("seed", range(3))
def test_batches_give_what_one_by_one_gives_while_a_contract_is_held(week, seed):
    rng = random.Random(seed)
    one, one_bars, one_rolls = held_hub({"CL": {"CLZ6"}})
    for rec in week:
        one.process(rec)
    many, many_bars, many_rolls = held_hub({"CL": {"CLZ6"}})
    i = 0
    while i < len(week):
        n = rng.choice((1, ONE_BY_ONE, 333, 5000))
        many.process_many(week[i:i + n])
        i += n
    assert many_bars == one_bars and [type(b) for b in many_bars] == [type(b) for b in one_bars]
    assert many_rolls == one_rolls and many.counters == one.counters


def test_a_released_contract_stops_after_the_roll_session_and_resume_covers_a_held_open_minute(week):
    hub, published, rolls = held_hub({"CL": {"CLZ6"}})
    for rec in week[: len(week) // 2]:
        hub.process(rec)
    state = hub.roots["CL"]
    assert state.front.active == "CLF7" and state.held["CLZ6"].minutes.open_minute is not None
    assert hub.resume_point() <= state.held["CLZ6"].minutes.open_minute  # a reconnect replays its minute too
    session_over = session_end(rolls[0].session_date)
    for i, rec in enumerate(week[len(week) // 2:]):  # the position closed: runhub says so every heartbeat
        hub.process(rec)
        if i % 500 == 0:
            hub.hold({})
    assert hub.holding  # kept to the end of the roll's session: a position the books do not show yet
    hub.process(heartbeat(int((session_over + timedelta(minutes=1)).timestamp()) * 10**9))
    hub.hold({})
    last = max(b.end for b in published if isinstance(b, HeldBar))
    assert not hub.holding and last <= session_over


def test_held_bars_go_to_the_contracts_own_streams_in_redis(settings, redis_prefix):
    settings.REDIS_PREFIX = redis_prefix
    client = redis.Redis(decode_responses=True)
    hub, published, _ = held_hub({"CL": {"CLZ6"}})
    for rec in stream(seed=1, hours=30):
        hub.process(rec)
    held = [b for b in published if isinstance(b, HeldBar)]
    assert held, "the stream rolls CL inside 30 h"
    one_by_one, batched = held[: len(held) // 2], held[len(held) // 2:]
    for bar in one_by_one:
        assert streams.publish(bar, client)
    publisher = streams.BarPublisher(client, batch=10_000)
    for bar in batched:
        publisher.add(bar)
    publisher.flush()
    publisher.flush()
    hours = [f["bar"] for _, f in client.xrange(streams.stream_key("CLZ6", "1h"))]
    assert hours == [b.to_message() for b in held if b.timeframe == "1h"]  # the same bars, in its own stream
    assert client.xlen(streams.stream_key("CLZ6", "1m")) == sum(b.timeframe == "1m" for b in held)
    assert streams.last_minute("CLZ6", client).to_message() == [b for b in held if b.timeframe == "1m"][-1].to_message()
    assert client.xlen(streams.stream_key("CL", "1h")) == 0 and client.get(key("last", "CL")) is None

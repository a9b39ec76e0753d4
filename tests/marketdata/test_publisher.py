"""The hub's bar writer: ordered, no duplicates, the watermark after its bars, nothing lost while
Redis is away or when the answer to a call is lost."""
import time
from datetime import timedelta

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from strategies.bars import Bar, HeldBar
from tests.marketdata.minutes import T0, minute
from trading.marketdata import streams
from trading.marketdata.hub import Hub
from trading.marketdata.roll import FrontMonth


def test_bars_written_in_one_pipeline_with_the_watermark_after_them(prefixed):
    fresh, counted = [], Hub({"CL": FrontMonth("CL", active="CLZ6")}, publish=lambda bar: None)
    pub = streams.BarPublisher(prefixed, batch=1000, on_fresh=fresh.append, on_duplicate=counted.duplicate)
    for i in range(60):
        pub.add(minute(i))
    assert prefixed.xlen(streams.stream_key("CL", "1m")) == 0  # buffered until a flush
    pub.watermark(int((T0 + timedelta(hours=1)).timestamp()) * 10**9)  # sends, does not wait for the answer
    deadline = time.monotonic() + 5  # (Redis may read this test's next command, on another connection, first)
    while prefixed.xlen(streams.stream_key("CL", "1m")) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert prefixed.xlen(streams.stream_key("CL", "1m")) == 60 and not fresh
    assert pub.flush() == 60 and len(fresh) == 60  # the answer is read by the next flush
    assert streams.watermark_ms(prefixed) == int((T0 + timedelta(hours=1)).timestamp() * 1000)
    assert Bar.from_message(prefixed.get(f"{prefixed_key('last', 'CL')}")).ts == T0 + timedelta(minutes=59)
    for bar in (minute(58), minute(59)):  # already there (a replay after a reconnect)
        counted._emit(bar)
        pub.add(bar)
    assert counted.counters["bars_1m"] == 2  # the hub counts what it hands over …
    assert pub.flush() == 0 and counted.counters["duplicate_bars"] == 2 and counted.counters["bars_1m"] == 0  # … and is told


def prefixed_key(*parts):
    from trading.redis_client import key

    return key(*parts)


def test_a_call_of_several_streams_writes_each_in_order_and_answers_for_each_bar(prefixed):
    """One call carries the bars of several streams, interleaved as the hub builds them (a root's minutes, its
    hour, another root's minutes, a held contract's): each stream gets its own bars in their order, each bar's
    answer (written, or already there) comes back for that bar, and each 'last' key takes its stream's newest."""
    fresh, duplicates = [], []
    pub = streams.BarPublisher(prefixed, batch=1000, on_fresh=fresh.append, on_duplicate=duplicates.append)
    pub.add(minute(3))
    pub.add(minute(1, "ES"))
    assert pub.flush() == 2
    fresh.clear()
    hour = Bar("CL", "CLZ6", "1h", T0, 70, 80, 69, 79, 600, 180)
    held = [HeldBar.of(Bar("CL", "CLX6", "1m", minute(i).ts, 60, 61, 59, 60.5, 1, 1)) for i in range(2)]
    bars = [minute(0), minute(0, "ES"), held[0], minute(1), minute(1, "ES"), hour, minute(2), minute(2, "ES"),
            minute(3), held[1], minute(4), minute(3, "ES")]
    for bar in bars:
        pub.add(bar)
    assert pub.flush() == 6
    assert set(duplicates) == {minute(0), minute(1), minute(2), minute(3), minute(0, "ES"), minute(1, "ES")}
    assert set(fresh) == {minute(4), minute(2, "ES"), minute(3, "ES"), hour, *held} and len(fresh) == 6

    def starts(name, timeframe="1m"):
        return [Bar.from_message(fields["bar"]).ts for _, fields in prefixed.xrange(streams.stream_key(name, timeframe))]

    assert starts("CL") == [minute(3).ts, minute(4).ts] and starts("CL", "1h") == [T0]
    assert starts("ES") == [minute(i).ts for i in (1, 2, 3)] and starts("CLX6") == [b.ts for b in held]
    assert [Bar.from_message(prefixed.get(prefixed_key("last", name))).ts for name in ("CL", "ES", "CLX6")] == [
        minute(4).ts, minute(3).ts, held[1].ts]


def test_redis_away_holds_every_bar_and_writes_them_in_order_when_back(prefixed):
    down = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0),  # nothing listens on port 1
                       decode_responses=True)
    pub = streams.BarPublisher(down, batch=10)
    for i in range(25):
        pub.add(minute(i))
    assert pub.flush() == 0 and len(pub.pending) == 25 and pub.failures >= 1
    pub.client = prefixed
    assert pub.flush() == 25
    ids = [int(i.split("-")[0]) for i, _ in prefixed.xrange(streams.stream_key("CL", "1m"))]
    assert ids == sorted(ids) and len(ids) == 25


def test_a_lost_answer_sends_the_bars_again_and_they_come_back_as_duplicates(prefixed):
    """The connection dies after the call left (Redis wrote the bars, the answer is lost): the bars
    are held and sent again; the stream refuses them as duplicates; nothing is lost or doubled."""
    duplicates = []
    pub = streams.BarPublisher(prefixed, batch=1000, on_duplicate=duplicates.append)
    for i in range(30):
        pub.add(minute(i))
    assert pub.send() == 0 and pub._in_flight
    deadline = time.monotonic() + 5
    while prefixed.xlen(streams.stream_key("CL", "1m")) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)  # Redis has run the call …
    pub._conn.disconnect()  # … and the connection drops before its answer is read
    # the answer is lost: the bars are held and sent again at once, and refused as already there
    assert pub.flush() == 0 and not pub.pending and duplicates == [minute(i) for i in range(30)]
    for i in range(30, 35):
        pub.add(minute(i))
    assert pub.flush() == 5
    ids = [int(i.split("-")[0]) for i, _ in prefixed.xrange(streams.stream_key("CL", "1m"))]
    assert len(ids) == len(set(ids)) == 35 and ids == sorted(ids)


def test_redis_restarted_without_the_script_loads_it_again(prefixed):
    pub = streams.BarPublisher(prefixed, batch=1000)
    pub.add(minute(0))
    assert pub.flush() == 1
    prefixed.script_flush()  # what a restarted Redis looks like to the next EVALSHA
    pub.add(minute(1))
    pub.send()
    assert pub.flush() == 1 and prefixed.xlen(streams.stream_key("CL", "1m")) == 2

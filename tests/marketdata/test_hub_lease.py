"""One hub per feed: the lease a hub takes before it subscribes, a standby that names the holder and takes over
when the lease runs out, and the fence: a bar writer whose hub lost the lease appends nothing, inside Redis."""
import logging
import time
from datetime import timedelta

import pytest

from strategies.bars import Bar
from tests.marketdata.minutes import T0, minute
from trading.marketdata import streams
from trading.marketdata.lease import HubLease, LeaseLost
from trading.redis_client import key

FEED = "GLBX.MDP3"


@pytest.fixture
def client(prefixed):
    return prefixed


def hub_on_host(client, host, monkeypatch, ttl=3):
    """A lease as a hub of another host holds it (its token names that host: no pid check applies)."""
    monkeypatch.setenv("PINEOPS_HOST_NAME", host)
    return HubLease(client, FEED, ttl=ttl)


def test_a_second_hub_stands_by_naming_the_holder_and_takes_over_when_the_lease_runs_out(client, monkeypatch, caplog):
    first = hub_on_host(client, "host-a", monkeypatch)
    assert first.wait() and client.get(key("lock", "hub", FEED)) == first.token
    second = hub_on_host(client, "host-b", monkeypatch)
    caplog.set_level(logging.INFO, "trading.marketdata.lease")
    stop_at = time.monotonic() + 1.5
    assert not second.wait(stopping=lambda: time.monotonic() > stop_at)  # the first renews nothing, but holds
    assert f"another hub holds the feed feed={FEED} holder={first.token}" in caplog.text
    started = time.monotonic()
    assert second.wait(stopping=lambda: time.monotonic() - started > 10)  # the lease of 3 s runs out
    assert 1.0 < time.monotonic() - started <= 3.5 and client.get(key("lock", "hub", FEED)) == second.token
    with pytest.raises(LeaseLost, match="another hub holds the feed"):
        first.renew(force=True)
    assert not first.held
    second.release()
    assert client.get(key("lock", "hub", FEED)) is None


def test_a_renewed_lease_is_kept_and_a_clean_stop_hands_it_over_at_once(client, monkeypatch):
    first = hub_on_host(client, "host-a", monkeypatch)
    assert first.wait()
    second = hub_on_host(client, "host-b", monkeypatch)
    until = time.monotonic() + 4.5  # longer than the lease: the holder renews it meanwhile
    while time.monotonic() < until:
        first.renew()
        assert not second.wait(stopping=lambda: True) and not second.lock.acquire()
        time.sleep(0.2)
    first.release()
    assert second.lock.acquire()


def test_a_lease_found_free_is_taken_back(client, monkeypatch):
    """Redis restarted without the key (or the lease lapsed with no standby): the hub goes on holding it."""
    lease = hub_on_host(client, "host-a", monkeypatch)
    assert lease.wait()
    client.delete(key("lock", "hub", FEED))
    lease.renew(force=True)
    assert lease.held and client.get(key("lock", "hub", FEED)) == lease.token


def test_a_fenced_writer_appends_nothing_and_raises(client, monkeypatch):
    first = hub_on_host(client, "host-a", monkeypatch)
    assert first.wait()
    pub = streams.BarPublisher(client, batch=1000, lease=first)
    for i in range(10):
        pub.add(minute(i))
    assert pub.flush() == 10
    client.set(key("lock", "hub", FEED), "host-b:1:1")  # another hub took the feed (this one was frozen)
    for i in range(10, 20):
        pub.add(minute(i))
    pub.watermark(int((T0 + timedelta(hours=1)).timestamp()) * 10**9)  # sent: refused inside Redis
    with pytest.raises(LeaseLost):
        pub.flush()
    assert client.xlen(streams.stream_key("CL", "1m")) == 10  # nothing of the refused call was written …
    assert streams.watermark_ms(client) == 0  # … neither its watermark …
    assert Bar.from_message(client.get(key("last", "CL"))).ts == minute(9).ts  # … nor its last bar


def test_a_writer_whose_lease_was_free_takes_it_back_and_writes_its_bars(client, monkeypatch):
    lease = hub_on_host(client, "host-a", monkeypatch)
    assert lease.wait()
    pub = streams.BarPublisher(client, batch=1000, lease=lease)
    client.delete(key("lock", "hub", FEED))  # Redis restarted without the key
    for i in range(5):
        pub.add(minute(i))
    pub.send()
    assert pub.flush() == 5  # refused once, the lease taken back, the bars sent again …
    assert client.xlen(streams.stream_key("CL", "1m")) == 5 and client.get(key("lock", "hub", FEED)) == lease.token


def test_a_replay_of_older_bars_leaves_the_last_bar_alone(client):
    """A hub taking over rebuilds the day: its bars already in the streams are refused, and the root's last
    bar (the market's price for exits and the dashboard) never goes back to one of them."""
    pub = streams.BarPublisher(client, batch=1000)
    for i in range(30):
        pub.add(minute(i))
    assert pub.flush() == 30
    duplicates = []
    replay = streams.BarPublisher(client, batch=1000, on_duplicate=duplicates.append)
    for i in range(20):
        replay.add(minute(i))
    assert replay.flush() == 0 and len(duplicates) == 20
    assert Bar.from_message(client.get(key("last", "CL"))).ts == minute(29).ts
    for i in range(25, 32):
        replay.add(minute(i))
    assert replay.flush() == 2 and Bar.from_message(client.get(key("last", "CL"))).ts == minute(31).ts


def test_a_writer_of_a_hub_that_already_lost_its_lease_raises_instead_of_holding_bars(client, monkeypatch):
    lease = hub_on_host(client, "host-a", monkeypatch)
    assert lease.wait()
    client.set(key("lock", "hub", FEED), "host-b:1:1")
    with pytest.raises(LeaseLost):
        lease.renew(force=True)
    client.delete(key("lock", "hub", FEED))  # even with the lease free now: this hub stood down, it takes nothing
    pub = streams.BarPublisher(client, batch=1000, lease=lease)
    pub.add(minute(0))
    with pytest.raises(LeaseLost):
        pub.flush()
    assert client.xlen(streams.stream_key("CL", "1m")) == 0 and client.get(key("lock", "hub", FEED)) is None

"""The hand-over between the Databento client's thread and the hub's: every record once, in order,
the hub woken at once, and a hub that falls behind holding the client back instead of filling memory."""
import threading
import time

from trading.marketdata.live import RecordFeed


def test_records_arrive_once_in_order_across_threads():
    feed = RecordFeed(limit=1000, batch=64)
    n = 50_000

    def client():
        for i in range(n):
            feed.put(i)

    thread = threading.Thread(target=client)
    thread.start()
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        batch = feed.take(timeout=0.1)
        assert len(batch) <= 64
        got += batch
    thread.join(5)
    assert got == list(range(n)) and feed.empty()


def test_a_waiting_hub_is_woken_by_the_next_record():
    feed = RecordFeed()
    threading.Timer(0.2, feed.put, args=("rec",)).start()
    started = time.monotonic()
    assert feed.take(timeout=5) == ["rec"]
    assert time.monotonic() - started < 2  # woken by the record, not by the timeout
    assert feed.take(timeout=0.05) == []  # nothing more: the timeout ends the wait


def test_a_full_feed_holds_the_client_until_the_hub_takes():
    feed = RecordFeed(limit=10, batch=4)
    for i in range(10):
        feed.put(i)
    done = threading.Event()
    threading.Thread(target=lambda: (feed.put(10), done.set()), daemon=True).start()
    assert not done.wait(0.3)  # the client waits: the feed is full
    assert feed.take(timeout=0) == [0, 1, 2, 3]
    assert done.wait(2)
    rest = feed.take(timeout=0) + feed.take(timeout=0)
    assert rest == [4, 5, 6, 7, 8, 9, 10]


def test_blocks_past_their_bytes_hold_the_client_until_the_hub_takes():
    """Blocks are bounded by their bytes (a socket read brings up to a megabyte), records between them by number."""
    feed = RecordFeed(block_bytes=1000)
    for _ in range(2):
        feed.put_block(b"x" * 500)
    feed.put("mapping")  # a record among the blocks: not counted in the blocks' bytes
    done = threading.Event()
    threading.Thread(target=lambda: (feed.put_block(b"y" * 10), done.set()), daemon=True).start()
    assert not done.wait(0.3)  # 1,000 bytes of blocks waiting: the client waits
    assert feed.take(timeout=0) == [b"x" * 500, b"x" * 500, "mapping"]
    assert done.wait(2)
    assert feed.take(timeout=0) == [b"y" * 10]
    for _ in range(200):  # what was taken is no longer counted: the feed never fills up with nothing waiting
        feed.put_block(b"z" * 999)
        assert feed.take(timeout=0) == [b"z" * 999]

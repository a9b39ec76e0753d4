"""Trades in blocks straight from the socket reads (trading.marketdata.rawfeed): whatever the reads' sizes, every
record comes out once and in order, the trades as bytes blocks and everything else through the client's own
decoder, and a hub fed the blocks builds exactly the bars it builds from the decoded records."""
import random
from datetime import date

import databento_dbn as dbn
import pytest

from trading.marketdata.hub import Hub
from trading.marketdata.hubbatch import TRADE_BYTES, TradeRows
from trading.marketdata.rawfeed import TradeSplitter, split_trades
from trading.marketdata.roll import FrontMonth
from trading.sim.market import front_month, generate

START = date(2026, 10, 26)


@pytest.fixture(scope="module")
def session_bytes(tmp_path_factory):
    """A session's DBN stream as a gateway sends it: the header, then trades with symbol mappings before each
    instrument's first, and heartbeats and an error between them."""
    path = generate(tmp_path_factory.mktemp("dbn"), roots=["CL"], start=START, days=3, seed=3,
                    trades_per_minute=6.0)["CL"]
    decoder = dbn.DBNDecoder()
    decoder.write(path.read_bytes())
    metadata, *records = decoder.decode()
    symbols = {int(i["symbol"]): raw for raw, intervals in metadata.mappings.items() for i in intervals}
    rng = random.Random(4)
    out, mapped = [metadata.encode()], set()
    for rec in records:
        if rec.instrument_id not in mapped:
            mapped.add(rec.instrument_id)
            out.append(bytes(dbn.SymbolMappingMsg(1, rec.instrument_id, rec.ts_event, dbn.SType.PARENT, "CL.FUT",
                                                  dbn.SType.RAW_SYMBOL, symbols[rec.instrument_id], rec.ts_event,
                                                  2**63 - 1)))
        if rng.random() < 0.002:
            out.append(bytes(dbn.SystemMsg(rec.ts_event, "Heartbeat", code=dbn.SystemCode.HEARTBEAT)))
        if rng.random() < 0.0005:
            out.append(bytes(dbn.ErrorMsg(rec.ts_event, "a gateway error", code=dbn.ErrorCode.INTERNAL_ERROR)))
        out.append(bytes(rec))
    return b"".join(out)


def decoded_whole(data: bytes) -> list:
    decoder = dbn.DBNDecoder()
    decoder.write(data)
    return decoder.decode()[1:]


def split(data: bytes, sizes) -> list:
    """Items as the splitter hands them on: bytes blocks, and what the client's decoder makes of the rest."""
    decoder, items = dbn.DBNDecoder(), []

    def decode(part: bytes) -> None:  # the client's _process_dbn: decode and call back per record
        decoder.write(part)
        items.extend(r for r in decoder.decode() if not isinstance(r, dbn.Metadata))

    splitter = TradeSplitter(decode, items.append)
    at = 0
    while at < len(data):
        n = next(sizes)
        splitter.feed(data[at:at + n])
        at += n
    assert not splitter.pending
    return items


def flat(items) -> list:
    out = []
    for item in items:
        if type(item) is bytes:
            assert len(item) % TRADE_BYTES == 0 and item
            out += [("trade", r.instrument_id, r.ts_event, r.price, r.size) for r in TradeRows(item)]
        elif isinstance(item, dbn.TradeMsg):
            out.append(("trade", item.instrument_id, item.ts_event, item.price, item.size))
        else:
            out.append((type(item).__name__, item.ts_event, bytes(item)))
    return out


@pytest.mark.parametrize("reads", ["64k", "tiny", "random"])
def test_every_record_comes_out_once_in_order_whatever_the_reads(session_bytes, reads):
    rng = random.Random(len(reads))
    sizes = {"64k": iter(lambda: 65536, None), "tiny": iter(lambda: rng.randint(1, 7), None),
             "random": iter(lambda: rng.randint(1, 20_000), None)}[reads]
    items = split(session_bytes, sizes)
    assert flat(items) == flat(decoded_whole(session_bytes)[: len(flat(items))])
    assert len(flat(items)) == len(decoded_whole(session_bytes))
    assert any(type(i) is bytes for i in items) and any(isinstance(i, dbn.SymbolMappingMsg) for i in items)
    assert not any(isinstance(i, dbn.TradeMsg) for i in items)  # no trade decoded one by one


def test_a_hub_fed_blocks_builds_the_bars_it_builds_from_records(session_bytes):
    def hub():
        bars = []
        return Hub({"CL": FrontMonth("CL", active=front_month("CL", START))}, publish=bars.append), bars

    by_blocks, blocks_bars = hub()
    items = split(session_bytes, iter(lambda: 65536, None))
    for i in range(0, len(items), 100):
        by_blocks.process_many(items[i:i + 100])
    by_records, record_bars = hub()
    records = decoded_whole(session_bytes)
    for i in range(0, len(records), 8192):
        by_records.process_many(records[i:i + 8192])
    assert record_bars and blocks_bars == record_bars
    assert by_blocks.counters == by_records.counters


def test_a_client_without_the_protocol_parts_keeps_its_per_record_path_and_says_so(caplog):
    """Another databento version (no `_session._protocol._process_dbn`): nothing is replaced, a warning names it."""
    class Protocol:  # a protocol of another shape: no `_process_dbn` to put the splitter in front of
        def __init__(self):
            self._loop, self._last_msg_loop_time = None, 0.0

    class Client:
        def __init__(self):
            self._session = type("Session", (), {})()
            self._session._protocol = Protocol()

    client = Client()
    with caplog.at_level("WARNING", logger="trading.marketdata.rawfeed"):
        assert split_trades(client, on_trades=lambda block: None) is False
    assert "records one by one" in caplog.text
    assert not hasattr(client._session._protocol, "_process_dbn")
    assert split_trades(object(), on_trades=lambda block: None) is False  # no session at all


def test_a_busy_feeds_socket_read_brings_up_to_a_megabyte_in_one_block(session_bytes):
    """The client's own protocol (databento 0.88) reads into 64 KB; once split, a read may bring READ_BYTES, and
    the trades of one read come out as one block: a wake of the client's thread per 20k trades, not per 1,365."""
    import asyncio

    from databento.live.protocol import DatabentoLiveProtocol

    from trading.marketdata.rawfeed import READ_BYTES

    trades = b"".join(bytes(r) for r in decoded_whole(session_bytes) if isinstance(r, dbn.TradeMsg))
    trades = trades[:READ_BYTES // TRADE_BYTES * TRADE_BYTES]
    assert len(trades) > 10 * 65536
    loop = asyncio.new_event_loop()

    async def protocol():  # its futures belong to a loop, as the client's do
        made = DatabentoLiveProtocol("db-" + "x" * 29, "GLBX.MDP3")
        made._loop, made._last_msg_loop_time = loop, 0.0
        made.authenticated.set_result("session")
        return made

    try:
        proto = loop.run_until_complete(protocol())
    finally:
        loop.close()
    client = type("Client", (), {})()
    client._session = type("Session", (), {})()
    client._session._protocol = proto
    blocks = []
    assert split_trades(client, on_trades=blocks.append)
    buffer = proto.get_buffer(-1)  # what the event loop reads the socket into
    assert len(buffer) == READ_BYTES
    buffer[:len(trades)] = trades
    proto.buffer_updated(len(trades))
    assert blocks == [trades]

"""Trade records straight from the client's socket reads, in blocks of bytes, without a Python object per trade.

The official client decodes every record into an object and calls back once per record: most of what a busy
feed costs. `split_trades(client, on_trades)` puts a splitter in front of the client's decoder: each socket read
is cut into runs of trade records, handed over as one bytes block each (`on_trades`, read with numpy by
trading.marketdata.hubbatch), and the other records (symbol mappings, definitions, system and error messages),
which the client goes on decoding, logging and calling back as before, in their order with the trades. The
client's own header (metadata) and its timers are left to it; its socket reads are made larger (READ_BYTES). It
relies on the client's protocol object (databento 0.88, pinned): without the parts it needs, it says so and the
client's per-record path stays.
"""
from __future__ import annotations

import logging
import struct

import numpy as np

from trading.marketdata.hubbatch import RECORD_HEAD, TRADE_BYTES, TRADE_RTYPE

log = logging.getLogger(__name__)
TRADE_WORDS = TRADE_BYTES // 4  # a record's length byte counts 4-byte words
# Bytes a socket read may bring. The client reads into 64 KB: on a busy feed, a wake of its thread (and a hand-over
# of the interpreter with the hub's) per 1,365 trades; a read brings what has arrived, so a quiet feed is unchanged.
READ_BYTES = 1 << 20
READ_BUFFER = "_DatabentoLiveProtocol__buffer"  # the client's read buffer (its get_buffer and buffer_updated's)
HEAD = np.dtype({"names": ["length", "rtype"], "formats": ["u1", "u1"], "offsets": [0, 1], "itemsize": TRADE_BYTES})
assert HEAD == RECORD_HEAD


class TradeSplitter:
    """Cuts the DBN byte stream of a session into trade blocks (to `on_trades`) and other records (to `decode`,
    the client's own decoding and dispatch), in order. Bytes of a record not complete yet wait for the next read."""

    def __init__(self, decode, on_trades, on_data=lambda last_ts: None):
        self.decode = decode
        self.on_trades = on_trades
        self.on_data = on_data  # a block went out (its newest ts_event): the client's timers
        self.pending = b""
        self.metadata_left: int | None = None  # bytes of the DBN header still to pass to `decode` (None: unknown)

    def feed(self, data: bytes) -> None:
        data = self.pending + data if self.pending else data
        self.pending = b""
        at = self._header(data)
        if at is None:
            return
        end = len(data)
        others = at  # start of the run of other records being gathered
        while at < end:
            if end - at < 2:
                break
            if data[at] == TRADE_WORDS and data[at + 1] == TRADE_RTYPE:
                run = self._trade_run(data, at)
                if not run:  # a trade not all in yet
                    break
                if others < at:
                    self.decode(data[others:at])
                block = data[at:at + run * TRADE_BYTES]
                self.on_trades(block)
                self.on_data(int.from_bytes(block[-TRADE_BYTES + 8:-TRADE_BYTES + 16], "little"))
                at += run * TRADE_BYTES
                others = at
                continue
            length = data[at] * 4
            if length == 0:  # not a record: let the client's decoder judge (and fail) as it would
                self.decode(data[others:])
                return
            if at + length > end:
                break
            at += length
        if others < at:
            self.decode(data[others:at])
        self.pending = data[at:]

    def _header(self, data: bytes) -> int | None:
        """Pass the session's DBN header (metadata) to the client whole; the offset after it (None: not all in)."""
        if self.metadata_left is None:
            if len(data) < 8:
                self.pending = data
                return None
            if data[:3] != b"DBN":
                self.metadata_left = 0  # no header (a client that read it already): records from the start
            else:
                self.metadata_left = 8 + struct.unpack_from("<I", data, 4)[0]
        if self.metadata_left:
            if len(data) < self.metadata_left:
                self.pending = data
                return None
            at, self.metadata_left = self.metadata_left, 0
            self.decode(data[:at])
            return at
        return 0

    @staticmethod
    def _trade_run(data: bytes, at: int) -> int:
        """How many whole trade records follow one another from `at`."""
        n = (len(data) - at) // TRADE_BYTES
        if n <= 1:
            return n
        head = np.frombuffer(data, HEAD, count=n, offset=at)
        bad = (head["length"] != TRADE_WORDS) | (head["rtype"] != TRADE_RTYPE)
        first_bad = int(bad.argmax())
        return first_bad if bad[first_bad] else n


def split_trades(client, on_trades) -> bool:
    """Once the client is connected (after its first subscribe, before `start`): its trades go to `on_trades` in
    bytes blocks, everything else as before. False (and nothing changed) when this client lacks what it needs."""
    protocol = getattr(getattr(client, "_session", None), "_protocol", None)
    decode = getattr(protocol, "_process_dbn", None)
    loop = getattr(protocol, "_loop", None)
    if decode is None or loop is None or not hasattr(protocol, "_last_msg_loop_time"):
        log.warning("databento client without the protocol parts the trade splitter needs: records one by one")
        return False

    def seen(last_ts: int) -> None:  # what the client's received_record does for each record: its timers
        protocol._last_ts_event = last_ts
        protocol._last_msg_loop_time = loop.time()

    protocol._process_dbn = TradeSplitter(decode, on_trades, seen).feed
    buffer = getattr(protocol, READ_BUFFER, None)
    if isinstance(buffer, bytearray) and len(buffer) < READ_BYTES:  # (absent: the client's own size stays)
        setattr(protocol, READ_BUFFER, bytearray(READ_BYTES))
    return True

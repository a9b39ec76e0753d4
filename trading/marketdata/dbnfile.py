"""Read DBN files (plain or .zst) with the official decoder, after checking what the decoder trusts.

The header (magic, version, metadata length against the bytes there are, the metadata's own
layout) and every record's length against its type's struct are checked here before a byte
reaches the decoder, so a crafted file is reported with its reason instead of crashing the
process, allocating what it claims or swallowing a record. A file that fails is `bad` (its
reason in `error`); a record with UNDEF_PRICE or an impossible timestamp is counted, and a bad
timestamp is left out. The decoder's panics (pyo3_runtime.PanicException, a BaseException) are
caught by their class only, never by a bare BaseException.
"""
from __future__ import annotations

import logging
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import databento_dbn as dbn
import numpy as np

log = logging.getLogger(__name__)
CHUNK = 1 << 20
KNOWN_SCHEMAS = {"trades", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "ohlcv-1s", "mbp-1", "tbbo", "definition",
                 "statistics", "status"}
PRELUDE = 8  # b"DBN", version, u32 metadata length
METADATA_FIXED = 100  # dataset .. reserved, the same size in every version
METADATA_MIN = METADATA_FIXED + 4 * 5  # + schema_definition_length and four counts
MAX_METADATA = 32 << 20  # far above any real file (symbols and mappings); a bound before reading
HEADER = 16  # record header: length (in 4-byte words), rtype, publisher, instrument, ts_event
TS_MAX = (1 << 63) - 1  # ts_event must fit int64 ns (UNDEF_TIMESTAMP, 2**64-1, does not)
SYMBOL_CSTR = {1: dbn.SYMBOL_CSTR_LEN_V1, 2: dbn.SYMBOL_CSTR_LEN_V2, 3: dbn.SYMBOL_CSTR_LEN_V3}

# rtype → record struct (by name in databento_dbn.v1/v2/v3).
_RTYPE_STRUCTS = {0: "TradeMsg", 1: "MBP1Msg", 10: "MBP10Msg", 17: "OHLCVMsg", 18: "StatusMsg",
                  19: "InstrumentDefMsg", 20: "ImbalanceMsg", 21: "ErrorMsg", 22: "SymbolMappingMsg",
                  23: "SystemMsg", 24: "StatMsg", 32: "OHLCVMsg", 33: "OHLCVMsg", 34: "OHLCVMsg", 35: "OHLCVMsg",
                  36: "OHLCVMsg", 160: "MBOMsg", 177: "CMBP1Msg", 192: "CBBOMsg", 193: "CBBOMsg", 194: "TCBBOMsg",
                  195: "BBOMsg", 196: "BBOMsg"}


def _min_lengths(version: int) -> np.ndarray:
    """Per rtype, the shortest record the decoder can read in a file of `version` (0: unknown rtype).

    The decoder reads a record shorter than this version's struct as an older version's, so the
    bound is the smallest struct of versions 1..version."""
    out = np.zeros(256, dtype=np.int64)
    for rtype, name in _RTYPE_STRUCTS.items():
        out[rtype] = min(getattr(getattr(dbn, f"v{v}"), name).size_hint for v in range(1, version + 1))
    return out


MIN_LENGTHS = {v: _min_lengths(v) for v in range(1, dbn.DBN_VERSION + 1)}


class BadFile(ValueError):
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


@dataclass
class Reading:
    path: Path
    schema: str | None = None
    dataset: str | None = None
    symbols: dict[int, str] = field(default_factory=dict)  # instrument_id → raw symbol (from the metadata)
    records: list = field(default_factory=list)
    problems: Counter = field(default_factory=Counter)
    error: str | None = None  # why the file as a whole cannot be used (None: it can)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad(self) -> bool:
        return self.error is not None


def is_decoder_panic(exc: BaseException) -> bool:
    """A Rust panic inside databento_dbn, surfaced by pyo3 as pyo3_runtime.PanicException."""
    cls = type(exc)
    return cls.__name__ == "PanicException" and cls.__module__ == "pyo3_runtime"


class _Source:
    """Bytes of a DBN file; `size` is the byte count when known up front (a plain file)."""

    def __init__(self, path: Path):
        self._file = path.open("rb")
        self.size = path.stat().st_size

    def read(self, n: int) -> bytes:
        return self._file.read(n)

    def close(self) -> None:
        self._file.close()


class _ZstdSource(_Source):
    """A .zst file, decompressed a small piece of input at a time so that no frame, however it is
    crafted, makes more than PIECE × 32768 bytes at once (a zstd block is at most 128 KiB from
    4 bytes); a stream that ends inside a frame is `truncated`, never a silently shorter file."""

    PIECE = 1024

    def __init__(self, path: Path):
        import zstandard

        super().__init__(path)
        self.size = None
        self._zstd = zstandard
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._in_frame = False
        self._raw, self._at = b"", 0
        self._pending = bytearray()
        self._input_done = False

    def _step(self) -> None:
        if self._at >= len(self._raw):
            self._raw, self._at = self._file.read(CHUNK), 0
            if not self._raw:
                self._input_done = True
                if self._in_frame:
                    raise BadFile("truncated", "the zstd stream ends inside a frame")
                return
        piece = self._raw[self._at:self._at + self.PIECE]
        self._at += len(piece)
        try:
            self._pending += self._frame.decompress(piece)
        except self._zstd.ZstdError as exc:
            raise BadFile("corrupt", f"zstd: {exc}") from None
        self._in_frame = True
        if self._frame.eof:  # a frame ended; what follows it (another frame) goes to a new one
            rest = self._frame.unused_data
            self._raw, self._at = rest + self._raw[self._at:], 0
            self._frame = self._zstd.ZstdDecompressor().decompressobj()
            self._in_frame = False

    def read(self, n: int) -> bytes:
        while len(self._pending) < n and not self._input_done:
            self._step()
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out


def read_records(path: Path) -> Reading:
    reading = Reading(Path(path))
    try:
        source = (_ZstdSource if reading.path.suffix == ".zst" else _Source)(reading.path)
    except OSError as exc:
        _fail(reading, BadFile("corrupt", f"cannot open: {exc}"))
        return reading
    try:
        _read(reading, source)
    except BadFile as exc:
        _fail(reading, exc)
    except (dbn.DBNError, ValueError, RuntimeError, OSError) as exc:
        _fail(reading, BadFile("corrupt", f"{exc.__class__.__name__}: {exc}"))
    except BaseException as exc:
        if not is_decoder_panic(exc):
            raise  # KeyboardInterrupt, SystemExit, MemoryError: not ours to swallow
        _fail(reading, BadFile("corrupt", f"decoder panic: {str(exc)[:200]}"))
    finally:
        source.close()
    return reading


def _fail(reading: Reading, exc: BadFile) -> None:
    reading.problems[exc.kind] += 1
    reading.error = reading.error or f"{exc.kind}: {exc}"
    log.error("dbn file refused path=%s problem=%s reason=%s records_before=%d", reading.path, exc.kind, exc,
              len(reading.records))


def _read(reading: Reading, source: _Source) -> None:
    prelude = source.read(PRELUDE)
    if not prelude:
        raise BadFile("no_metadata", "empty file")
    if len(prelude) < PRELUDE or prelude[:3] != b"DBN":
        raise BadFile("not_dbn", f"does not start with a DBN header (first bytes {prelude[:4]!r})")
    version, length = prelude[3], struct.unpack_from("<I", prelude, 4)[0]
    if version not in MIN_LENGTHS:
        raise BadFile("not_dbn", f"DBN version {version}; this reader knows 1 to {dbn.DBN_VERSION}")
    if length < METADATA_MIN:
        raise BadFile("bad_metadata", f"metadata length {length} is below the minimum {METADATA_MIN}")
    if length > MAX_METADATA:
        raise BadFile("bad_metadata", f"metadata length {length} is above the bound {MAX_METADATA}")
    if source.size is not None and PRELUDE + length > source.size:
        raise BadFile("bad_metadata", f"metadata length {length} runs past the end of the file ({source.size} bytes)")
    metadata = source.read(length)
    if len(metadata) < length:
        raise BadFile("truncated", f"metadata length {length} but the data ends after {len(metadata)} bytes")
    _check_metadata(version, metadata)

    decoder = dbn.DBNDecoder()
    decoder.write(prelude + metadata)
    for item in decoder.decode():
        _take(reading, item)
    if reading.schema is not None and reading.schema not in KNOWN_SCHEMAS:
        raise BadFile("unknown_schema", f"schema {reading.schema}")
    min_lengths = MIN_LENGTHS[version]
    offset, carry = PRELUDE + length, b""
    while block := source.read(CHUNK):
        data = carry + block
        end = _complete_records(data, min_lengths, offset)
        if end:
            decoder.write(data[:end])
            for item in decoder.decode():
                _take(reading, item)
        offset += end
        carry = data[end:]
    if carry:
        raise BadFile("truncated", f"{len(carry)} bytes at byte {offset} are not a whole record")
    leftover = len(decoder.buffer())
    if leftover:
        raise BadFile("truncated", f"the decoder kept {leftover} trailing bytes")


def _check_metadata(version: int, buf: bytes) -> None:
    """The metadata's layout: its counts fit inside it and it ends where its length says (padding to
    8 bytes allowed), so no record is taken for metadata and nothing is allocated by a count."""
    cstr = SYMBOL_CSTR[version]
    pos = METADATA_FIXED
    if version > 1:
        cstr = struct.unpack_from("<H", buf, 16 + 2 + 8 * 3 + 3)[0]
        if not 1 <= cstr <= 1024:
            raise BadFile("bad_metadata", f"symbol length {cstr}")
    schema_definition = struct.unpack_from("<I", buf, pos)[0]
    if schema_definition:
        raise BadFile("bad_metadata", f"schema definition of {schema_definition} bytes (not supported)")
    pos += 4

    def need(n: int, what: str) -> None:
        if pos + n > len(buf):
            raise BadFile("bad_metadata", f"{what} runs past the metadata length {len(buf)}")

    for what in ("symbols", "partial", "not_found"):
        need(4, what)
        count = struct.unpack_from("<I", buf, pos)[0]
        pos += 4
        need(count * cstr, f"{count} {what}")
        pos += count * cstr
    need(4, "mappings")
    mappings = struct.unpack_from("<I", buf, pos)[0]
    pos += 4
    if mappings * (cstr + 4) > len(buf) - pos:
        raise BadFile("bad_metadata", f"{mappings} symbol mappings cannot fit in the metadata")
    for i in range(mappings):
        need(cstr + 4, f"mapping {i}")
        intervals = struct.unpack_from("<I", buf, pos + cstr)[0]
        pos += cstr + 4
        need(intervals * (8 + cstr), f"mapping {i} with {intervals} intervals")
        pos += intervals * (8 + cstr)
    padding = len(buf) - pos
    if padding >= 8 or any(buf[pos:]):
        raise BadFile("bad_metadata", f"metadata length {len(buf)} does not match its content ({pos} bytes): "
                                      f"{padding} bytes unaccounted for (records would be read as metadata)")


def _complete_records(data: bytes, min_lengths: np.ndarray, offset: int) -> int:
    """The byte count of the whole records at the start of `data`, each checked against its rtype's
    struct; BadFile at the first record the decoder could not read safely."""
    view = np.frombuffer(data, dtype=np.uint8)
    n, p = len(data), 0
    while p + HEADER <= n:
        length, rtype = data[p] * 4, data[p + 1]
        need = int(min_lengths[rtype])
        if need == 0:
            raise BadFile("bad_record", f"unknown record type {rtype} at byte {offset + p}")
        if length < need:
            name = _RTYPE_STRUCTS[rtype]
            raise BadFile("bad_record", f"record type {rtype} ({name}) at byte {offset + p} is {length} bytes; "
                                        f"its struct needs {need}")
        if p + length > n:
            break
        nxt = p + length
        if nxt + 1 < n and data[nxt] == data[p] and data[nxt + 1] == rtype:
            p += length * _run(view, p, length)
        else:  # a record unlike the next one (mixed files): no numpy for it
            p = nxt
    return p


def _run(view: np.ndarray, p: int, length: int) -> int:
    """How many records from `p` on share the record at p's length and rtype (at least 1), checked
    with numpy in growing windows: fixed-size files go at array speed."""
    count, window = 1, 64
    while True:
        avail = (len(view) - p) // length - count
        if avail <= 0:
            return count
        k = min(window, avail)
        idx = p + length * np.arange(count, count + k)
        same = (view[idx] == view[p]) & (view[idx + 1] == view[p + 1])
        if not same.all():
            return count + int(np.argmin(same))
        count += k
        window *= 4


def _take(reading: Reading, item) -> None:
    if isinstance(item, dbn.Metadata):
        reading.schema = str(item.schema) if item.schema is not None else None
        reading.dataset = item.dataset
        for raw, intervals in (item.mappings or {}).items():
            for interval in intervals:
                try:
                    reading.symbols[int(interval["symbol"])] = raw
                except (KeyError, ValueError):
                    continue
        return
    ts = getattr(item, "ts_event", None)
    if ts is not None and ts > TS_MAX:
        reading.problems["bad_ts"] += 1
        return
    price = getattr(item, "price", None)
    if price is not None and price == dbn.UNDEF_PRICE:
        reading.problems["undef_price"] += 1
    reading.records.append(item)

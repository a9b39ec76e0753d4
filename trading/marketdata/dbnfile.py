"""Read DBN files (plain or .zst) with the official decoder, counting garbage instead of crashing.

A corrupt or truncated file, a record with UNDEF_PRICE or an unknown schema is logged with the
file and position, counted, and skipped; what could be read is returned.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import databento_dbn as dbn

log = logging.getLogger(__name__)
CHUNK = 1 << 20
KNOWN_SCHEMAS = {"trades", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "ohlcv-1s", "mbp-1", "tbbo", "definition",
                 "statistics", "status"}


@dataclass
class Reading:
    path: Path
    schema: str | None = None
    dataset: str | None = None
    symbols: dict[int, str] = field(default_factory=dict)  # instrument_id → raw symbol (from the metadata)
    records: list = field(default_factory=list)
    problems: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems


def _chunks(path: Path):
    if path.suffix == ".zst":
        import zstandard

        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            while True:
                try:
                    block = stream.read(CHUNK)
                except zstandard.ZstdError as exc:
                    raise ValueError(f"zstd: {exc}") from None
                if not block:
                    return
                yield block
    else:
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                yield block


def read_records(path: Path) -> Reading:
    reading = Reading(Path(path))
    decoder = dbn.DBNDecoder()
    consumed = 0
    try:
        for block in _chunks(reading.path):
            consumed += len(block)
            decoder.write(block)
            for item in decoder.decode():
                _take(reading, item)
    except (dbn.DBNError, ValueError, RuntimeError, OSError) as exc:
        reading.problems["corrupt"] += 1
        log.error("dbn file corrupt path=%s near_byte=%d error=%s", reading.path, consumed, exc)
        return reading
    leftover = len(decoder.buffer())
    if leftover:
        reading.problems["truncated"] += 1
        log.error("dbn file truncated path=%s trailing_bytes=%d", reading.path, leftover)
    if reading.schema is None and not reading.records:
        reading.problems["no_metadata"] += 1
        log.error("dbn file has no metadata path=%s", reading.path)
    return reading


def _take(reading: Reading, item) -> None:
    if isinstance(item, dbn.Metadata):
        reading.schema = str(item.schema) if item.schema is not None else None
        reading.dataset = item.dataset
        if reading.schema is not None and reading.schema not in KNOWN_SCHEMAS:
            reading.problems["unknown_schema"] += 1
            log.error("dbn file has unknown schema path=%s schema=%s", reading.path, reading.schema)
        for raw, intervals in (item.mappings or {}).items():
            for interval in intervals:
                try:
                    reading.symbols[int(interval["symbol"])] = raw
                except (KeyError, ValueError):
                    continue
        return
    price = getattr(item, "price", None)
    if price is not None and price == dbn.UNDEF_PRICE:
        reading.problems["undef_price"] += 1
    reading.records.append(item)

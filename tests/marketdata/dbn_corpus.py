"""A corpus of crafted DBN files, each with the problem kind the reader must report for it.

`write_corpus(dir, tmp)` writes the crafted files of EXPECTED and two good ones named to sort after them
(`zz_good_trades.dbn`: generated CL trades; `zz_glbx.ohlcv-1h.dbn.zst`: the real ES sample), and
returns {file name: expected kind}. A kind in RECORD_KINDS means the file is usable and that many
records are counted; every other kind means the file is refused as a whole.
"""
from __future__ import annotations

import struct
from datetime import date
from pathlib import Path

import zstandard

from tests.conftest import glbx_samples
from trading.sim.market import generate

RECORD_KINDS = {"bad_ts", "bad_bar"}
U32 = struct.Struct("<I")


def _trades(tmp: Path) -> bytes:
    files = generate(tmp, roots=["CL"], start=date(2026, 11, 2), days=2, seed=4, roll_day=0, trades_per_minute=0.5)
    return Path(files["CL"]).read_bytes()


def _ohlcv() -> bytes:
    with (glbx_samples() / "test_data.ohlcv-1h.dbn.zst").open("rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def _meta_len(blob: bytes) -> int:
    return U32.unpack_from(blob, 4)[0]


def _with_len(blob: bytes, length: int) -> bytes:
    return blob[:4] + U32.pack(length) + blob[8:]


def _patch(blob: bytes, offset: int, data: bytes) -> bytes:
    return blob[:offset] + data + blob[offset + len(data):]


def _first_record(blob: bytes) -> int:
    return 8 + _meta_len(blob)


def _rtype(blob: bytes, rtype: int, index: int = 0) -> bytes:
    """The `index`-th 48-byte trade record relabelled as another record type (same 48 bytes)."""
    return _patch(blob, _first_record(blob) + 48 * index + 1, bytes([rtype]))


def _zst(blob: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(blob)


EXPECTED = {
    "meta_len_100.dbn": "bad_metadata",
    "meta_len_plus_48.dbn": "bad_metadata",
    "meta_len_minus_8.dbn": "bad_metadata",
    "meta_len_4gib.dbn": "bad_metadata",
    "meta_len_past_eof.dbn": "bad_metadata",
    "meta_symbol_count_huge.dbn": "bad_metadata",
    "meta_dataset_not_utf8.dbn": "corrupt",
    "meta_schema_unknown.dbn": "corrupt",
    "bad_magic.dbn": "not_dbn",
    "bad_version.dbn": "not_dbn",
    "empty.dbn": "no_metadata",
    "prelude_only.dbn": "bad_metadata",
    "short_mbp1.dbn": "bad_record",
    "short_error.dbn": "bad_record",
    "short_symbol_mapping.dbn": "bad_record",
    "short_system.dbn": "bad_record",
    "short_statistics.dbn": "bad_record",
    "short_ohlcv.dbn": "bad_record",
    "short_definition.dbn": "bad_record",
    "record_len_zero.dbn": "bad_record",
    "unknown_rtype.dbn": "bad_record",
    "truncated_mid_record.dbn": "truncated",
    "garbage_tail.dbn": "bad_record",
    "ts_event_max.dbn": "bad_ts",
    "ohlcv_bad_values.ohlcv-1h.dbn": "bad_bar",
    "meta_len_4gib.dbn.zst": "bad_metadata",
    "meta_len_plus_48.dbn.zst": "bad_metadata",
    "short_mbp1.dbn.zst": "bad_record",
    "zstd_corrupt.dbn.zst": "corrupt",
    "zstd_cut.dbn.zst": "truncated",
    "not_zstd.dbn.zst": "corrupt",
}


def crafted(trades: bytes, ohlcv: bytes) -> dict[str, bytes]:
    """name → bytes of each file of EXPECTED."""
    L = _meta_len(trades)
    first = _first_record(trades)
    bad_ts = _patch(trades, first + 48 * 3 + 8, struct.pack("<Q", 2**64 - 1))  # ts_event of the 4th record
    o_first = _first_record(ohlcv)
    bad_bars = _patch(ohlcv, o_first + 56 * 1 + 48, struct.pack("<Q", 2**64 - 1))  # volume of the 2nd bar
    bad_bars = _patch(bad_bars, o_first + 56 * 2 + 16, struct.pack("<q", 2**63 - 1))  # open of the 3rd: UNDEF_PRICE
    zst_trades = _zst(trades)
    symbols_at = 8 + 100 + 4  # the symbols count, after the fixed part and schema_definition_length
    cases = {
        "meta_len_100.dbn": _with_len(trades, 100),
        "meta_len_plus_48.dbn": _with_len(trades, L + 48),
        "meta_len_minus_8.dbn": _with_len(trades, L - 8),
        "meta_len_4gib.dbn": _with_len(trades, 2**32 - 1),
        "meta_len_past_eof.dbn": _with_len(trades, 10 << 20),
        "meta_symbol_count_huge.dbn": _patch(trades, symbols_at, U32.pack(2**32 - 1)),
        "meta_dataset_not_utf8.dbn": _patch(trades, 8, b"\xff\xfe"),
        "meta_schema_unknown.dbn": _patch(trades, 8 + 16, struct.pack("<H", 999)),
        "bad_magic.dbn": b"XYZ" + trades[3:],
        "bad_version.dbn": trades[:3] + bytes([9]) + trades[4:],
        "empty.dbn": b"",
        "prelude_only.dbn": trades[:8],
        "short_mbp1.dbn": _rtype(trades, 1),
        "short_error.dbn": _rtype(trades, 21, 5),
        "short_symbol_mapping.dbn": _rtype(trades, 22, 7),
        "short_system.dbn": _rtype(trades, 23, 2),
        "short_statistics.dbn": _rtype(trades, 24, 9),
        "short_ohlcv.dbn": _rtype(trades, 33, 4),
        "short_definition.dbn": _rtype(trades, 19, 1),
        "record_len_zero.dbn": _patch(trades, first + 48 * 6, b"\x00"),
        "unknown_rtype.dbn": _rtype(trades, 99, 3),
        "truncated_mid_record.dbn": trades[: first + 48 * 20 + 17],
        "garbage_tail.dbn": trades + bytes(range(7, 207)),
        "ts_event_max.dbn": bad_ts,
        "ohlcv_bad_values.ohlcv-1h.dbn": bad_bars,
        "meta_len_4gib.dbn.zst": _zst(_with_len(trades, 2**32 - 1)),
        "meta_len_plus_48.dbn.zst": _zst(_with_len(trades, L + 48)),
        "short_mbp1.dbn.zst": _zst(_rtype(trades, 1)),
        "zstd_corrupt.dbn.zst": zst_trades[:40] + bytes(200) + zst_trades[240:],
        "zstd_cut.dbn.zst": zst_trades[: len(zst_trades) // 2],
        "not_zstd.dbn.zst": trades,
    }
    assert set(cases) == set(EXPECTED)
    return cases


def write_corpus(out: Path, tmp: Path) -> dict[str, str]:
    trades, ohlcv = _trades(tmp), _ohlcv()
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, blob in crafted(trades, ohlcv).items():
        (out / name).write_bytes(blob)
        expected[name] = EXPECTED[name]
    (out / "zz_good_trades.dbn").write_bytes(trades)
    (out / "zz_glbx.ohlcv-1h.dbn.zst").write_bytes((glbx_samples() / "test_data.ohlcv-1h.dbn.zst").read_bytes())
    return expected

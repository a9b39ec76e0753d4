"""Crafted DBN files stay inert: each is reported by name with its reason, good files after it still
load, and nothing crashes, panics, allocates what a header claims or silently drops a record —
in the reader, in `manage.py warmup --from-dir` and in the local gateway's loader."""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.marketdata.dbn_corpus import EXPECTED, RECORD_KINDS, _trades, write_corpus
from trading.marketdata import dbnfile
from trading.marketdata.dbnfile import read_records

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1536 << 20  # address space of the subprocesses: a 4 GiB allocation cannot succeed


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("dbn")
    expected = write_corpus(base / "corpus", base / "gen")
    return base / "corpus", expected


def test_the_corpus_covers_the_reported_cases(corpus):
    _, expected = corpus
    assert len(expected) >= 20
    for name in ("meta_len_100.dbn", "meta_len_plus_48.dbn", "meta_len_4gib.dbn", "meta_len_4gib.dbn.zst",
                 "ts_event_max.dbn", "short_mbp1.dbn", "short_error.dbn", "short_symbol_mapping.dbn",
                 "short_system.dbn", "short_statistics.dbn", "short_ohlcv.dbn"):
        assert name in expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_crafted_file_is_refused_or_counted_with_its_reason(corpus, name, capfd):
    directory, expected = corpus
    reading = read_records(directory / name)
    kind = expected[name]
    err = capfd.readouterr().err
    assert "panicked" not in err and "Traceback" not in err  # the decoder never saw what it cannot read
    if kind in RECORD_KINDS - {"bad_bar"}:
        assert not reading.bad and reading.problems[kind] == 1, reading.problems
    elif kind == "bad_bar":  # a sane file as DBN; its bars are judged by warmup (below)
        assert not reading.bad and len(reading.records) == 4
    else:
        assert reading.bad and reading.problems[kind] == 1, (reading.problems, reading.error)
        assert reading.error.startswith(f"{kind}: ") and len(reading.error) > len(kind) + 10


def test_a_metadata_length_48_bytes_too_large_never_swallows_a_record(corpus):
    directory, _ = corpus
    good = read_records(directory / "zz_good_trades.dbn")
    blob = (directory / "zz_good_trades.dbn").read_bytes()
    length = struct.unpack_from("<I", blob, 4)[0]
    for delta in (8, 48, 96):  # a whole number of records (48 bytes each) or of 8-byte words
        (directory.parent / "off.dbn").write_bytes(blob[:4] + struct.pack("<I", length + delta) + blob[8:])
        off = read_records(directory.parent / "off.dbn")
        assert off.bad and "does not match its content" in off.error and not off.records
    assert good.ok and len(good.records) > 500


def test_an_impossible_timestamp_is_one_counted_record_and_every_other_record_stays(corpus):
    directory, _ = corpus
    good = read_records(directory / "zz_good_trades.dbn").records
    bad = read_records(directory / "ts_event_max.dbn")
    assert bad.problems == {"bad_ts": 1}
    assert [bytes(r) for r in bad.records] == [bytes(r) for i, r in enumerate(good) if i != 3]


def test_a_decoder_panic_is_caught_by_its_class_and_nothing_else_is(corpus, monkeypatch, capfd):
    directory, _ = corpus
    # Let a crafted header through the checks: the real decoder panics (pyo3_runtime.PanicException).
    monkeypatch.setattr(dbnfile, "METADATA_MIN", 100)
    monkeypatch.setattr(dbnfile, "_check_metadata", lambda version, buf: None)
    reading = read_records(directory / "meta_len_100.dbn")
    assert reading.bad and reading.error.startswith("corrupt: decoder panic")
    capfd.readouterr()  # the panic's own message went to stderr

    class Interrupting:
        def write(self, data):
            raise KeyboardInterrupt

    monkeypatch.setattr(dbnfile.dbn, "DBNDecoder", Interrupting)
    with pytest.raises(KeyboardInterrupt):  # never swallowed with the panics
        read_records(directory / "zz_good_trades.dbn")


def test_a_missing_file_is_a_bad_file_not_an_exception(tmp_path):
    reading = read_records(tmp_path / "nowhere.dbn")
    assert reading.bad and reading.error.startswith("corrupt: cannot open")


def test_a_zstd_bomb_is_refused_without_inflating_it(tmp_path):
    import resource

    import zstandard

    trades = _trades(tmp_path / "gen")
    first = 8 + struct.unpack_from("<I", trades, 4)[0]
    bomb = tmp_path / "bomb.dbn.zst"  # a valid header, then 256 MiB of zeros in ~10 KB
    bomb.write_bytes(zstandard.ZstdCompressor(level=1).compress(trades[:first] + bytes(256 << 20)))
    assert bomb.stat().st_size < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reading = read_records(bomb)
    assert reading.bad and "record type 0 (TradeMsg)" in reading.error and "is 0 bytes" in reading.error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: far from 256 MiB


@pytest.mark.django_db
def test_warmup_names_each_bad_file_and_loads_every_good_one(corpus, capsys):
    directory, expected = corpus
    call_command("warmup", from_dir=directory, roots="CL,ES")
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "panicked" not in out.err
    for name, kind in expected.items():
        if kind in RECORD_KINDS:
            assert f"{name}: left out or flagged records: {kind} " in out.err, name
        else:
            assert f"skipped {name}: {kind}: " in out.err, name
    assert f"{sum(k not in RECORD_KINDS for k in expected.values())} bad file(s) skipped" in out.err
    assert "ohlcv_bad_values.ohlcv-1h.dbn: left out or flagged records: bad_bar 2" in out.err
    from trading.marketdata.barstore import bars_from_reading, load_frame

    want = bars_from_reading(read_records(directory / "zz_good_trades.dbn"), {"CL"}, {})["CL"]["1h"]
    assert len(load_frame("CL", "1h")) == len(want) > 10
    assert len(load_frame("ES", "1h")) == 4  # the real sample, after every bad file


def test_the_gateway_skips_each_bad_file_with_a_logged_reason(corpus, caplog):
    from trading.sim.replay import ReplaySource

    directory, expected = corpus
    files = sorted(directory.iterdir())
    with caplog.at_level(logging.ERROR, logger="trading.sim.replay"):
        records = ReplaySource(files).records
    skipped = {r.getMessage() for r in caplog.records if r.name == "trading.sim.replay"}
    for name, kind in expected.items():
        hit = [m for m in skipped if f"/{name} " in m]
        assert bool(hit) == (kind not in RECORD_KINDS), (name, hit)
        if hit:
            assert f"reason={kind}: " in hit[0]
    good = len(read_records(directory / "zz_good_trades.dbn").records)
    # the good trades twice (also in ts_event_max.dbn, less one record), and both ohlcv files
    assert len(records) == good + (good - 1) + 4 + 4


# --- whole processes: memory and time ------------------------------------------------------------

def _env(runtime: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(RUNTIME_DIR=str(runtime), PINEOPS_ENV_FILE="/dev/null", DJANGO_SETTINGS_MODULE="pineops.settings",
               RUST_BACKTRACE="1")
    return env


# Runs its arguments as its only child under an address-space limit and writes the child's peak RSS.
LIMITED = r"""
import json, resource, subprocess, sys
limit, rss_file, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
code = subprocess.run(args).returncode
open(rss_file, "w").write(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
sys.exit(code)
"""


def _limited(args: list[str], env: dict, rss_file: Path, timeout: float = 120) -> tuple[int, str, str, float]:
    """(exit status, stdout, stderr, peak RSS in MB) of `python ARGS` under MEMORY_LIMIT."""
    result = subprocess.run([sys.executable, "-c", LIMITED, str(MEMORY_LIMIT), str(rss_file), sys.executable, *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr, json.loads(rss_file.read_text())


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("runtime")
    result = subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=_env(runtime),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return runtime


PER_FILE = r"""
import io, json, os, resource, shutil, sys, time
from pathlib import Path
import django
django.setup()
from django.core.management import call_command
from trading.sim.replay import ReplaySource
corpus, scratch = Path(sys.argv[1]), Path(sys.argv[2])
scratch.mkdir()
results = {}
for path in sorted(corpus.iterdir()):
    one = scratch / path.name
    one.mkdir()
    shutil.copy(path, one / path.name)
    err = io.StringIO()
    t = time.perf_counter()
    call_command("warmup", from_dir=one, roots="CL,ES", stdout=io.StringIO(), stderr=err)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    served = len(ReplaySource([path]).records)
    results[path.name] = {"warmup_s": warm, "gateway_s": time.perf_counter() - t, "stderr": err.getvalue(),
                          "served": served}
print(json.dumps({"files": results, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_manage_py_warmup_over_the_corpus_under_a_memory_limit(corpus, runtime, tmp_path):
    directory, expected = corpus
    code, out, err, rss = _limited(["manage.py", "warmup", "--from-dir", str(directory), "--roots", "CL,ES"],
                                   _env(runtime), tmp_path / "rss")
    assert code == 0, err[-3000:]
    assert "Traceback" not in err and "panicked" not in err, err[-3000:]
    for name, kind in expected.items():
        assert name in err, name
    assert "CL 1h:" in out and "ES 1h:" in out
    assert rss < 300, f"peak RSS {rss:.0f} MB"
    with sqlite3.connect(runtime / "pineops.sqlite3") as db:
        counts = dict(db.execute("select root, count(*) from trading_storedbar where timeframe='1h' group by root"))
    assert counts["ES"] == 4 and counts["CL"] > 10


def test_each_file_takes_under_a_second_through_warmup_and_the_gateway(corpus, runtime, tmp_path):
    directory, expected = corpus
    code, out, err, rss = _limited(["-c", PER_FILE, str(directory), str(tmp_path / "one")], _env(runtime),
                                   tmp_path / "rss", timeout=300)
    assert code == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert "Traceback" not in err and "panicked" not in err, err[-3000:]
    assert report["maxrss_mb"] < 300 and rss < 300
    for name, result in report["files"].items():
        assert result["warmup_s"] < 1 and result["gateway_s"] < 1, (name, result)
        kind = expected.get(name)
        if kind is not None and kind not in RECORD_KINDS:
            assert f"skipped {name}: {kind}: " in result["stderr"] and result["served"] == 0, (name, result)
    assert report["files"]["zz_good_trades.dbn"]["served"] > 500

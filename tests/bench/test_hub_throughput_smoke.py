"""bench/hub_throughput.py on a tiny data set: every run sees the same records, the hub makes bars (to Redis
and, as runhub, its hourly and daily ones to the bar store), and the Redis keys it wrote are gone afterwards.
Numbers only; no timing is asserted."""
import importlib.util
import io
import sys
import uuid
from datetime import date
from pathlib import Path

import pytest
import redis

from trading.models import StoredBar

BENCH = Path(__file__).resolve().parents[2] / "bench" / "hub_throughput.py"

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]  # the bar store's writer thread


def load_bench():
    if "hub_throughput" not in sys.modules:
        spec = importlib.util.spec_from_file_location("hub_throughput", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules["hub_throughput"]


def test_hub_throughput_bench_runs_on_tiny_data(settings):
    bench = load_bench()
    prefix = f"pineops-bench-{uuid.uuid4().hex[:12]}"
    report = bench.run(roots=["CL"], start=date(2026, 10, 26), days=2, trades_per_minute=2.0, prefix=prefix,
                       timeout=30)
    raw, hub, per_record, from_file, bare = (report.get(name) for name in (
        "raw (live)", "hub (live)", "hub (live, per record)", "hub (file)", "hub (no redis)"))
    assert report.trades > 0 and report.mappings > 0
    # The same file through the client and from the file: the same records, all of them.
    assert raw.records == hub.records == per_record.records == from_file.records == bare.records == \
        report.trades + report.mappings
    assert hub.counters["system"] >= 1  # the end-of-data heartbeat (or two) ended the run
    assert hub.counters["records"] == hub.records + hub.counters["system"] + hub.counters["system_subscription_ack"]
    assert hub.counters["trades"] > 0 and hub.counters["bars_1m"] > 0 and hub.bars > 0
    assert hub.counters["duplicate_bars"] == 0 and hub.counters["out_of_order"] == 0
    assert hub.bars == per_record.bars == from_file.bars == bare.bars  # the same bars live and from the file
    assert StoredBar.objects.filter(source="hub", timeframe="1h").count() == hub.counters["bars_1h"] > 0
    assert raw.bars == 0
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert not list(client.scan_iter(f"{prefix}*"))

    out = io.StringIO()
    bench.print_report(report, out=out)
    text = out.getvalue()
    assert "raw (live)" in text and "hub (live)" in text and "hub/raw:" in text

"""bench/admin_speed.py runs end to end on a tiny history: every page answers 200 and is in the table.

No timing is asserted (that is the bench's job, on a quiet machine); this only keeps the script working.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRADES = 300
PAGES = ["trade list", "trade list: filter + search", "trade list: page 50", "CSV export: 100 selected",
         "CSV export: all trades", "dashboard"]


def test_admin_speed_bench_measures_every_page():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "admin_speed.py"), "--trades", str(TRADES), "--no-reference",
         "--repeat", "2", "--csv-repeat", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"seeded {TRADES} trades ({TRADES} in the table)" in result.stdout
    rows = {line.split("|")[0].strip(): line for line in result.stdout.splitlines() if line.count("|") >= 2}
    assert set(PAGES) <= set(rows), f"pages missing from the table:\n{result.stdout}"
    for page in PAGES:
        cells = rows[page].split("|")[1:-1]
        assert len(cells) == 1, rows[page]  # one run: no reference
        median, p95, queries, status, *returned = cells[0].split()
        assert status == "200", rows[page]
        assert float(median) > 0 and float(p95) >= float(median) and int(queries) > 0, rows[page]
    assert f"{TRADES} csv rows" in rows["CSV export: all trades"]
    assert "100 csv rows" in rows["CSV export: 100 selected"]
    assert "p3: 100 rows" in rows["trade list: page 50"]  # 300 trades: page 50 is the last page, 3
    assert "FAIL" not in result.stdout

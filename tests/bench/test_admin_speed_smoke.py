"""bench/admin_speed.py runs end to end on two tiny histories side by side: every page answers 200 and is in the table.

No timing is asserted (that is the bench's job, on a quiet machine); this only keeps the script working.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRADES = 300
SMALL = 120
PAGES = ["trade list", "trade list: filter + search", "trade list: page 50", "CSV export: one session",
         "CSV export: all trades", "dashboard"]


def test_admin_speed_bench_measures_every_page():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "admin_speed.py"), "--sizes", f"{SMALL},{TRADES}",
         "--repeat", "2", "--csv-repeat", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"seeded {TRADES} trades ({TRADES} in the table)" in result.stdout
    assert f"seeded {SMALL} trades ({SMALL} in the table)" in result.stdout
    rows = {line.split("|")[0].strip(): line for line in result.stdout.splitlines() if line.count("|") >= 2}
    assert set(PAGES) <= set(rows), f"pages missing from the table:\n{result.stdout}"
    for page in PAGES:
        cells = rows[page].split("|")[1:-1]
        assert len(cells) == 2, rows[page]  # both sizes, side by side
        for cell in cells:
            median, p95, queries, status, *returned = cell.split()
            assert status == "200", rows[page]
            assert float(median) > 0 and float(p95) >= float(median) and int(queries) > 0, rows[page]
    small, large = rows["CSV export: all trades"].split("|")[1:3]
    assert f"{SMALL} csv rows" in small and f"{TRADES} csv rows" in large
    assert " 0 csv rows" not in rows["CSV export: one session"]
    assert "p3: 100 rows" in rows["trade list: page 50"]  # 300 trades: page 50 is the last page, 3
    assert "FAIL" not in result.stdout

"""The admin's SVG charts: axes of round values covering the data, points placed by the sorted x labels,
the drawdown shaded below the running peak (from 0, as an account), escaped text, and the edge cases an
operator meets on a first day (one point, every value the same, nothing at all)."""
import re

import pytest

from trading.charts import Marker, bar_chart, line_chart, nice_ticks


@pytest.mark.parametrize("lo, hi", [(0, 1000), (-10.55, 999.99), (-2307.5, 0), (69.9, 71.05), (0.6512, 0.6803),
                                    (5, 5), (-3, -3)])
def test_ticks_are_round_steps_covering_the_values(lo, hi):
    ticks = nice_ticks(lo, hi)
    steps = {round(b - a, 10) for a, b in zip(ticks, ticks[1:])}
    assert ticks[0] <= lo and ticks[-1] >= hi and len(steps) == 1 and 2 <= len(ticks) <= 8
    step = steps.pop()
    assert f"{step:.0e}"[0] in "125"  # 1, 2 or 5 × a power of ten


def points(svg: str, curve: str) -> list[tuple[float, float]]:
    found = re.search(rf'data-curve="{re.escape(curve)}"[^>]*points="([^"]+)"', svg)[1]
    return [tuple(map(float, p.split(","))) for p in found.split()]


def test_points_stand_at_their_x_in_the_sorted_union_and_higher_values_higher():
    svg = line_chart({"b": [("2026-10-07", 50.0), ("2026-10-05", 10.0)], "a": [("2026-10-06", -20.0)]})
    b, a = points(svg, "b"), points(svg, "a")
    assert b[1][0] < a[0][0] < b[0][0]  # 10-05, 10-06, 10-07 from left to right
    assert b[0][1] < b[1][1] < a[0][1]  # 50 above 10 above -20 (SVG's y grows downwards)
    assert 'data-last="10.00"' in svg  # a series is drawn in the order given


def test_the_drawdown_is_the_gap_below_the_running_peak_from_zero():
    svg = line_chart({"total": [("d1", -50.0), ("d2", 100.0), ("d3", 40.0), ("d4", 70.0)]}, shade="total")
    assert re.search(r'class="drawdown" data-curve="total" data-max-drawdown="([0-9.]+)"', svg)[1] == "60.00"
    never_down = line_chart({"t": [("d1", 1.0), ("d2", 2.0)]}, shade="t")
    assert 'data-max-drawdown="0.00"' in never_down


def test_names_and_labels_are_escaped():
    svg = line_chart({'<script>alert(1)</script>"': [("2026-10-05", 1.0)]},
                     markers=[Marker("2026-10-05", 1.0, "entry", "x<img src=x onerror=alert(2)>")])
    assert "<script>" not in svg and "<img" not in svg and "&lt;script&gt;" in svg and "&lt;img" in svg


def test_one_point_one_value_and_nothing():
    assert line_chart({}) == "" and bar_chart([]) == ""
    single = line_chart({"a": [("2026-10-05", 0.0)]})
    assert "nan" not in single and 'data-points="1"' in single
    bars = bar_chart([("2026-10-05", 0.0), ("2026-10-06", -12.5)])
    assert re.findall(r'data-pnl="([-0-9.]+)"', bars) == ["0.00", "-12.50"] and "nan" not in bars
    flat = line_chart({"p": [("t1", 70.25), ("t2", 70.25)]}, money=False, decimals=2)
    labels = [float(v.replace(",", "")) for v in re.findall(r'class="y-label"[^>]*>([-0-9.,]+)<', flat)]
    assert "nan" not in flat and min(labels) < 70.25 < max(labels) < 72  # a band around the price, not 0 to 140

"""Server-side SVG charts for the admin: equity lines with drawdown shading, daily P&L bars, prices with the
trades marked. The appliance has no network (no script, no CDN), so a chart is markup the page carries.

Each series' x values are sortable text (ISO dates or times); the points stand at the index of their x in
the sorted union of every series' x values, so a chart of sessions has no weekend gaps. Every text placed
in a chart is escaped where it is written (a strategy's name may hold anything the ORM let through), so a
chart is safe to insert as it is. The numbers a test checks ride on data-* attributes of the marks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLOURS = ["#2b7bb9", "#d9822b", "#8e44ad", "#16a085", "#7f8c8d", "#b93a3a"]
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 10, 34  # plot margins: y labels on the left, x labels and legend below
WIN, LOSS, DRAWDOWN = "#3a9d23", "#c0392b", "rgba(192, 57, 43, 0.18)"


@dataclass(frozen=True)
class Marker:
    """A point drawn over a chart: a trade's entry (triangle up) or exit (triangle down)."""
    x: str
    y: float
    kind: str  # "entry" or "exit"
    title: str


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 × a power of ten apart) covering lo..hi, for a y axis."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:  # one value: a narrow band around it (a flat price stays readable to its tick)
        pad = abs(lo) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 10))
    return ticks


def _x_label(value: str) -> str:
    """An ISO date or time, short: `10-05` or `10-05 14:00`."""
    text = value.replace("T", " ")
    return text[5:16] if len(text) > 10 else text[5:10]


def _y_label(value: float, money: bool, decimals: int) -> str:
    if money:
        return f"{'-' if value < 0 else ''}${abs(value):,.0f}"
    return f"{value:,.{decimals}f}"


class _Frame:
    """The plot's coordinates: x by index of a label, y by value; the axes with their labels."""

    def __init__(self, xs: list[str], lo: float, hi: float, width: int, height: int, *, slots: bool = False):
        self.xs, self.width, self.height, self.slots = xs, width, height, slots
        self.index = {x: i for i, x in enumerate(xs)}
        self.ticks = nice_ticks(lo, hi)
        self.lo, self.hi = (self.ticks[0], self.ticks[-1]) if self.ticks else (lo, hi)
        self.span = (self.hi - self.lo) or 1.0

    def x(self, label: str) -> float:
        """Points from edge to edge; with `slots` (bars) each x in the middle of its own slot."""
        plot = self.width - LEFT - RIGHT
        if self.slots:
            return LEFT + (self.index[label] + 0.5) * plot / max(len(self.xs), 1)
        return LEFT + self.index[label] * plot / max(len(self.xs) - 1, 1)

    def y(self, value: float) -> float:
        return TOP + (self.hi - value) * (self.height - TOP - BOTTOM) / self.span

    def axes(self, *, money: bool, decimals: int) -> list[str]:
        label_count = max(2, (self.width - LEFT - RIGHT) // 90)  # room for "10-05 14:00" each
        out = []
        for tick in self.ticks:
            y = self.y(tick)
            out.append(f'<line x1="{LEFT}" x2="{self.width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="{"#888" if tick == 0 else "#ddd"}" stroke-width="1"/>')
            out.append(f'<text class="y-label" x="{LEFT - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end">'
                       f'{escape(_y_label(tick, money, decimals))}</text>')
        base = self.height - BOTTOM
        out.append(f'<line x1="{LEFT}" x2="{self.width - RIGHT}" y1="{base}" y2="{base}" stroke="#888"/>')
        if self.xs:
            step = max(1, math.ceil(len(self.xs) / label_count))
            for i in range(0, len(self.xs), step):
                label = self.xs[i]
                out.append(f'<text class="x-label" data-x="{escape(label)}" x="{self.x(label):.1f}" y="{base + 13}" '
                           f'font-size="10" text-anchor="middle">{escape(_x_label(label))}</text>')
        return out


def _svg(width: int, height: int, label: str, css: str, parts: list[str]) -> SafeString:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" viewBox="0 0 {width} {height}" width="100%" '
            f'role="img" aria-label="{escape(label)}">')
    return mark_safe(head + "".join(parts) + "</svg>")  # noqa: S308 — numbers and escaped text only


def line_chart(curves: dict[str, list[tuple[str, float]]], *, shade: str | None = None, money: bool = True,
               decimals: int = 2, markers: list[Marker] = (), width: int = 720, height: int = 240,
               label: str = "equity curve", css: str = "") -> SafeString:
    """One line per curve; `shade`: the curve whose drawdown (the gap below its running peak) is shaded."""
    curves = {name: series for name, series in curves.items() if series}
    if not curves:
        return SafeString("")
    values = [v for series in curves.values() for _, v in series] + [m.y for m in markers]
    lo, hi = min(values), max(values)
    if money:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    frame = _Frame(sorted({x for series in curves.values() for x, _ in series} | {m.x for m in markers}),
                   lo, hi, width, height)
    parts = frame.axes(money=money, decimals=decimals)
    if shade in curves:
        series, peak, top = curves[shade], 0.0 if money else -math.inf, []  # money starts at 0, as an account
        for x, v in series:
            peak = max(peak, v)
            top.append((x, peak))
        outline = [f"{frame.x(x):.1f},{frame.y(v):.1f}" for x, v in top]
        outline += [f"{frame.x(x):.1f},{frame.y(v):.1f}" for x, v in reversed(series)]
        worst = max((p - v for (_, p), (_, v) in zip(top, series)), default=0.0)
        parts.append(f'<polygon class="drawdown" data-curve="{escape(shade)}" data-max-drawdown="{worst:.2f}" '
                     f'fill="{DRAWDOWN}" stroke="none" points="{" ".join(outline)}"/>')
    legend_x = LEFT
    for i, (name, series) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(v):.1f}" for x, v in series)
        parts.append(f'<polyline class="curve" data-curve="{escape(name)}" data-last="{series[-1][1]:.2f}" '
                     f'data-points="{len(series)}" fill="none" stroke="{colour}" '
                     f'stroke-width="{3 if name == shade else 2}" points="{coords}"/>')
        parts.append(f'<text x="{legend_x}" y="{height - 4}" font-size="11" fill="{colour}">{escape(name)}</text>')
        legend_x += 7 * len(name) + 24
    for m in markers:
        x, y = frame.x(m.x), frame.y(m.y)
        tip = (f"{x:.1f},{y + 2:.1f} {x - 5:.1f},{y + 10:.1f} {x + 5:.1f},{y + 10:.1f}" if m.kind == "entry" else
               f"{x:.1f},{y - 2:.1f} {x - 5:.1f},{y - 10:.1f} {x + 5:.1f},{y - 10:.1f}")
        parts.append(f'<polygon class="marker {escape(m.kind)}" data-x="{escape(m.x)}" data-y="{m.y}" '
                     f'fill="{WIN if m.kind == "entry" else LOSS}" points="{tip}"><title>{escape(m.title)}</title>'
                     f'</polygon>')
    return _svg(width, height, label, f"chart line-chart {css}".strip(), parts)


def bar_chart(points: list[tuple[str, float]], *, width: int = 720, height: int = 200,
              label: str = "daily P&L", css: str = "") -> SafeString:
    """One bar per x (a session): green above zero, red below, in dollars."""
    if not points:
        return SafeString("")
    values = [v for _, v in points]
    frame = _Frame([x for x, _ in points], min(min(values), 0.0), max(max(values), 0.0), width, height,
                   slots=True)
    parts = frame.axes(money=True, decimals=2)
    slot = (width - LEFT - RIGHT) / max(len(points), 1)
    bar = max(1.0, min(24.0, slot * 0.7))
    for x_label, v in points:
        x, y0, y1 = frame.x(x_label), frame.y(0.0), frame.y(v)
        parts.append(f'<rect class="day-bar" data-x="{escape(x_label)}" data-pnl="{v:.2f}" x="{x - bar / 2:.1f}" '
                     f'y="{min(y0, y1):.1f}" width="{bar:.1f}" height="{max(abs(y1 - y0), 0.5):.1f}" '
                     f'fill="{WIN if v >= 0 else LOSS}"><title>{escape(x_label)}: {v:,.2f}</title></rect>')
    return _svg(width, height, label, f"chart bar-chart {css}".strip(), parts)

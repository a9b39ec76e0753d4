"""The report of an admin backtest as HTML: the CLI's metrics, the terms it ran with, the equity plot (inline SVG,
the drawdown from the running peak shaded) and the trade list. Every value from the row is escaped where
it is written; nothing here loads a script or a stylesheet from elsewhere (the appliance has no network)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from trading.charts import line_chart
from trading.models import BacktestRun

STYLE = """<style>
.backtest-report { max-width: 100%; }
.backtest-report table { margin-bottom: 1em; }
.backtest-report td, .backtest-report th { padding: 3px 6px; white-space: nowrap; }
.backtest-report td.num, .backtest-report th.num { text-align: right; font-variant-numeric: tabular-nums; }
.backtest-report .loss { color: #b93a3a; } .backtest-report .gain { color: #2f7d1f; }
.backtest-report svg { max-width: 100%; height: auto; border: 1px solid var(--hairline-color, #ddd); }
.backtest-report .trades { width: 100%; }
.backtest-progress progress { width: 320px; max-width: 100%; }
</style>"""


def money(value) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _signed(value) -> SafeString:
    css = "loss" if value is not None and value < 0 else "gain" if value else ""
    return format_html('<span class="{}">{}</span>', css, money(value))


def _time(text: str | None) -> str:
    """'2026-10-27T01:00:00Z' → '2026-10-27 01:00' (UTC, as every time of the report)."""
    return (text or "—").replace("T", " ").removesuffix("Z").removesuffix(":00")


def _price(value) -> str:
    """A price as the books keep it (9 decimals), without the float's noise: 70.37519999999999 → 70.3752."""
    return "—" if value is None else f"{value:.9f}".rstrip("0").rstrip(".")


def _decimal(text) -> str:
    try:
        return f"{Decimal(str(text)).normalize():f}"
    except (InvalidOperation, ValueError):
        return str(text)


def progress(run: BacktestRun) -> SafeString:
    bar = format_html('<progress max="100" value="{}">{} %</progress> {} % · {}', run.progress, run.progress,
                      run.progress, run.progress_text or run.get_state_display())
    return format_html('<div class="backtest-progress" data-state="{}">{}</div>', run.state, bar)


def metrics_table(metrics: dict) -> SafeString:
    if not metrics:
        return SafeString("")
    percent = lambda v: "—" if v is None else f"{v * 100:.1f} %"  # noqa: E731
    reasons = " · ".join(f"{k} {v}" for k, v in sorted((metrics.get("exit_reasons") or {}).items()))
    rows = [("trades", metrics.get("trades"), "bt-trades"), ("total P&L $", _signed(metrics.get("total_pnl")), "bt-total"),
            ("win rate", percent(metrics.get("win_rate")), ""), ("average P&L $", money(metrics.get("average_pnl")), ""),
            ("profit factor", "—" if metrics.get("profit_factor") is None else f"{metrics['profit_factor']:.2f}", ""),
            ("max drawdown $", money(metrics.get("max_drawdown")), ""),
            ("Sharpe (daily, annualised)", "—" if metrics.get("sharpe_daily") is None
             else f"{metrics['sharpe_daily']:.2f}", ""),
            ("exposure", percent(metrics.get("exposure")), ""), ("entry signals not taken", metrics.get("skipped_signals"), ""),
            ("exit reasons", reasons or "—", "")]
    body = format_html_join("", '<tr><th>{}</th><td class="num {}">{}</td></tr>', ((k, css, v) for k, v, css in rows))
    return format_html('<table class="metrics"><caption>Metrics (the CLI\'s report)</caption>{}</table>', body)


def terms_table(terms: dict) -> SafeString:
    legs = terms.get("legs") or {}
    if not legs:
        return SafeString("")
    rows = ((root, t.get("size"), t.get("commission_per_side"), _decimal(t.get("point_value")),
             f"threshold {t.get('ml_threshold')}" if terms.get("ml") and t.get("ml_enabled") else "off",
             f"{t.get('ibs_entry_low')}–{t.get('ibs_entry_high')} / {t.get('ibs_exit_low')}–{t.get('ibs_exit_high')}",
             f"{t.get('stop_loss_pct')} / {t.get('take_profit_pct')}", t.get("max_bars_held"),
             f"{t.get('entry_windows')} {t.get('window_tz')}", t.get("flat_time")) for root, t in sorted(legs.items()))
    body = format_html_join("", "<tr>" + "<td>{}</td>" * 10 + "</tr>", rows)
    head = "".join(f"<th>{h}</th>" for h in ("root", "size", "commission/side $", "point value $", "ML filter",
                                             "IBS entry / exit", "stop / target %", "max bars", "entry windows",
                                             "flat time"))
    return format_html('<table class="terms"><caption>Terms (max positions {}, timeframe {})</caption><thead><tr>{}'
                       '</tr></thead><tbody>{}</tbody></table>', terms.get("max_positions"), terms.get("timeframe"),
                       mark_safe(head), body)  # noqa: S308 — constant headings


def equity_svg(points: list, width: int = 1000, height: int = 300) -> SafeString:
    """Cumulative P&L at each exit, its drawdown from the running peak shaded (as the CLI plots it)."""
    if not points:
        return SafeString("<p>no trade closed: no equity to plot</p>")
    return line_chart({"equity $": [(str(at), float(v)) for at, v in points]}, shade="equity $", width=width,
                      height=height, label="equity curve and drawdown", css="backtest-equity")


def trade_table(trades: list[dict]) -> SafeString:
    if not trades:
        return SafeString("<p>no trades</p>")
    rows = ((i, t.get("symbol"), _time(t.get("entry_time")), _price(t.get("entry_price")), _time(t.get("exit_time")),
             _price(t.get("exit_price")), t.get("size"), _signed(t.get("pnl")),
             "—" if t.get("pnl_percent") is None else f"{t['pnl_percent']:.2f}", t.get("exit_reason"),
             t.get("bars_held"), "—" if t.get("ml_score") is None else f"{t['ml_score']:.3f}")
            for i, t in enumerate(trades, start=1))
    body = format_html_join("", '<tr class="trade"><td class="num">{}</td><td>{}</td><td>{}</td><td class="num">{}</td>'
                                '<td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num pnl">{}</td>'
                                '<td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>',
                            rows)
    return format_html('<table class="trades"><caption>Trades ({}; times UTC)</caption><thead><tr><th class="num">#</th>'
                       '<th>root</th><th>entry</th><th class="num">entry price</th><th>exit</th>'
                       '<th class="num">exit price</th><th class="num">size</th><th class="num">P&amp;L $</th>'
                       '<th class="num">P&amp;L %</th><th>exit reason</th><th class="num">bars</th>'
                       '<th class="num">ML score</th></tr></thead><tbody>{}</tbody></table>', len(trades), body)


def skipped_list(skipped: list[dict], limit: int = 500) -> SafeString:
    if not skipped:
        return SafeString("")
    items = format_html_join("", "<li>{} {}: {}</li>", ((s.get("symbol"), _time(s.get("bar_time")), s.get("reason"))
                                                        for s in skipped[:limit]))
    more = f" (the first {limit})" if len(skipped) > limit else ""
    return format_html("<details><summary>{} entry signals not taken{}</summary><ul>{}</ul></details>",
                       len(skipped), more, items)


def report(run: BacktestRun) -> SafeString:
    """The whole report section of a run's page ('' while it has none)."""
    if run.state != BacktestRun.State.DONE:
        return SafeString("")
    notes = format_html_join("", '<p class="backtest-note">{}</p>', ((n,) for n in run.notes or []))
    return format_html('{}<div class="backtest-report"><h2>Report</h2>{}{}{}<h3>Equity</h3>{}<h3>Trades</h3>{}{}</div>',
                       mark_safe(STYLE), notes, metrics_table(run.metrics),  # noqa: S308 — a constant
                       terms_table(run.terms), equity_svg(run.equity), trade_table(run.trades),
                       skipped_list(run.skipped))


def duration(run: BacktestRun) -> str:
    if not run.started_at:
        return "—"
    end: datetime = run.finished_at or run.updated_at
    return f"{(end - run.started_at).total_seconds():.1f} s"

"""The drift reports: per strategy and session, the backtest's decisions beside the worker's, and both equities."""
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from trading.models import DriftItem, DriftReport

from .base import ReadOnlyAdmin
from trading.charts import line_chart
from .orders import _link


def _fill(time, price) -> str:
    return f"{price.normalize()} at {time:%m-%d %H:%M}" if time is not None else "—"


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnlyAdmin):
    list_display = ("session_date", "strategy", "matched", "differences", "unexplained", "live_pnl", "backtest_pnl",
                    "created_at")
    list_filter = ("strategy", "unexplained")
    date_hierarchy = "session_date"
    list_select_related = ("strategy",)
    fields = ("strategy", "session_date", "created_at", "bars", "matched", "differences", "unexplained", "live_pnl",
              "backtest_pnl", "findings", "equity_plot", "decisions")
    readonly_fields = ("findings", "equity_plot", "decisions")

    @admin.display(description="found in the records")
    def findings(self, obj):
        if not obj.notes:
            return "nothing: no hub gap, no configuration or model change, the worker decided every hour"
        return format_html_join("", "<div class=\"drift-note\">{}</div>", ((n,) for n in obj.notes))

    @admin.display(description="equity (live and backtest)")
    def equity_plot(self, obj):
        curves = {side: [(at, value) for at, value in obj.equity.get(side, [])] for side in ("live", "backtest")}
        return line_chart({k: v for k, v in curves.items() if v}, css="equity") or "no trade closed in this session"

    @admin.display(description="decisions: backtest | live")
    def decisions(self, obj):
        rows = []
        for item in obj.items.select_related("signal", "follows"):
            live = _fill(item.live_time, item.live_price) if item.live_time else (item.live_state or "—")
            if item.signal_id:
                live = format_html("{} · {}", live, _link(item.signal, "signal"))
            rows.append((item.kind, item.pk, "drift-follows" if item.follows_id else "", item.root,
                         item.get_action_display(), f"{item.bar_time:%Y-%m-%d %H:%M}", item.exit_reason,
                         _fill(item.backtest_time, item.backtest_price) if item.backtest_time else
                         ("decided" if item.kind != DriftItem.Kind.EXTRA_LIVE else "—"),
                         live, item.get_kind_display(), item.get_reason_display() if item.reason else "",
                         item.detail))
        if not rows:
            return "no decision on either side"
        body = format_html_join("", '<tr class="drift-item {} {}" data-kind="{}" data-item="{}"><td>{}</td><td>{}</td>'
                                    '<td>{}</td><td>{}</td><td class="backtest">{}</td><td class="live">{}</td>'
                                    '<td>{}</td><td class="reason">{}</td><td>{}</td></tr>',
                                ((r[0], r[2], r[0], r[1], *r[3:]) for r in rows))
        return format_html('<table class="drift"><thead><tr><th>root</th><th>action</th><th>bar (UTC)</th>'
                           '<th>exit reason</th><th>backtest</th><th>live</th><th>comparison</th><th>reason</th>'
                           '<th>detail</th></tr></thead><tbody>{}</tbody></table>', body)

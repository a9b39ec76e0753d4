from django.contrib import admin

from trading.models import Position, Trade

from .base import ReadOnlyAdmin, csv_response

TRADE_CSV_FIELDS = ["id", "strategy", "symbol", "contract", "side", "entry_time", "entry_price", "entry_size",
                    "exit_time", "exit_price", "exit_size", "pnl", "pnl_percent", "exit_reason", "ml_score",
                    "ibs_entry", "ibs_exit", "commission", "session_date", "entry_signal", "exit_signal",
                    "created_at"]


def trade_csv_rows(queryset):
    for t in queryset.select_related("strategy", "entry_signal", "exit_signal").iterator(chunk_size=2000):
        yield [t.id, t.strategy.name, t.symbol, t.contract, t.side, t.entry_time.isoformat(), t.entry_price,
               t.entry_size, t.exit_time.isoformat(), t.exit_price, t.exit_size, t.pnl, t.pnl_percent,
               t.exit_reason, t.ml_score, t.ibs_entry, t.ibs_exit, t.commission, t.session_date,
               t.entry_signal.key, t.exit_signal.key if t.exit_signal else "", t.created_at.isoformat()]


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ("exit_time", "strategy", "symbol", "contract", "entry_time", "entry_price", "exit_price",
                    "entry_size", "pnl", "pnl_percent", "exit_reason")
    list_filter = ("strategy", "symbol", "exit_reason", "session_date")
    search_fields = ("symbol", "contract")
    date_hierarchy = "exit_time"
    list_select_related = ("strategy",)
    show_full_result_count = False
    actions = ["export_csv"]

    @admin.action(description="Export selected trades as CSV")
    def export_csv(self, request, queryset):
        return csv_response("trades.csv", TRADE_CSV_FIELDS, trade_csv_rows(queryset))

    def get_actions(self, request):
        # Read-only admins lose actions needing change permission; export only needs view.
        actions = super().get_actions(request)
        if self.has_view_permission(request):
            actions.setdefault("export_csv", self.get_action("export_csv"))
        return actions


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("strategy", "instrument", "contract", "state", "size", "entry_time", "entry_price",
                    "stop_price", "target_price", "bars_held", "ml_score")
    list_filter = ("state", "strategy", "instrument")
    list_select_related = ("strategy", "instrument")

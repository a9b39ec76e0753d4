from decimal import Decimal

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import escape, format_html

from trading.models import DailyRiskState, Instrument, Position, Trade

from .base import ReadOnlyAdmin, csv_response
from .trade_list import ExitReasonFilter, ReachPaginator, SymbolFilter, page_asked, plain, result_table

TRADE_CSV_FIELDS = ["id", "strategy", "symbol", "contract", "side", "entry_time", "entry_price", "entry_size",
                    "exit_time", "exit_price", "exit_size", "pnl", "pnl_percent", "exit_reason", "ml_score",
                    "ibs_entry", "ibs_exit", "commission", "session_date", "entry_signal", "exit_signal",
                    "created_at"]


# The columns of TRADE_CSV_FIELDS as values_list lookups: tuples of just these columns, no model
# instances and no signal rows (their JSON payloads) — about 4x faster on a 100k-trade export.
TRADE_CSV_VALUES = ["id", "strategy__name", "symbol", "contract", "side", "entry_time", "entry_price", "entry_size",
                    "exit_time", "exit_price", "exit_size", "pnl", "pnl_percent", "exit_reason", "ml_score",
                    "ibs_entry", "ibs_exit", "commission", "session_date", "entry_signal__key", "exit_signal__key",
                    "created_at"]
_ISO = {TRADE_CSV_VALUES.index(name) for name in ("entry_time", "exit_time", "created_at")}
_EXIT_KEY = TRADE_CSV_VALUES.index("exit_signal__key")


def trade_csv_rows(queryset):
    for values in queryset.values_list(*TRADE_CSV_VALUES).iterator(chunk_size=2000):
        row = list(values)
        for i in _ISO:
            row[i] = row[i].isoformat()
        if row[_EXIT_KEY] is None:
            row[_EXIT_KEY] = ""
        yield row


def at_tick(value: Decimal | None, tick: Decimal | None) -> str:
    """A price to its instrument's tick: as many decimals as the tick has, more only when the price has them
    (a stop or target filled between ticks), never a float's or a column's trailing digits."""
    if value is None:
        return "—"
    decimals = max(0, -Decimal(tick).normalize().as_tuple().exponent) if tick else 2
    return f"{value:,.{max(decimals, -value.normalize().as_tuple().exponent)}f}"


def signed_money(value: Decimal | None):
    if value is None:
        return "—"
    return format_html('<span class="{}">{}</span>', "neg" if value < 0 else "pos", f"{value:+,.2f}")


# Filters the daily summary answers (a row per strategy and session): its field for each of the list's parameters.
SUMMARY_FILTERS = {"strategy__id__exact": "strategy_id", "strategy__mode__exact": "strategy__mode",
                   "session_date__gte": "session_date__gte", "session_date__lt": "session_date__lt"}


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ("exit_at", "strategy", "contract_of", "session_date", "entry_at", "entry", "exit", "entry_size",
                    "pnl_shown", "pnl_percent_shown", "exit_reason")
    # Choices from small tables or fixed lists: no filter runs a DISTINCT over the trades.
    list_filter = (("strategy__mode", admin.ChoicesFieldListFilter), "strategy", SymbolFilter, ExitReasonFilter,
                   "session_date")
    search_fields = ("symbol", "contract")
    # No date_hierarchy: it runs SELECT DISTINCT over every trade on each page view (SQLite, 100k
    # trades: ~280 ms); the session_date filter navigates by date without a query.
    list_select_related = ("strategy",)
    readonly_fields = ("entry_order", "exit_order")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice is a count over every trade
    # No row checkboxes (a fifth of the page's rendering): the export button takes what the filters selected.
    actions = None

    def get_queryset(self, request):
        # Each row's tick, from its instrument, in the same query (prices are shown to it).
        return super().get_queryset(request).annotate(
            tick=Subquery(Instrument.objects.filter(root=OuterRef("symbol")).values("tick_size")[:1]))

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return ReachPaginator(queryset, per_page, orphans, allow_empty_first_page, page_asked=page_asked(request))

    def get_urls(self):
        export = path("export/", self.admin_site.admin_view(self.export_view), name="trading_trade_export")
        return [export, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if cl is not None:  # the totals of what the filters selected, every page of it
            response.context_data["totals"] = self.totals(cl)
            response.context_data["trade_table"] = result_table(cl, self.cells)
            response.context_data["export_url"] = (reverse("admin:trading_trade_export")
                                                   + cl.get_query_string(remove=[PAGE_VAR]))
        return response

    def export_view(self, request):
        """GET, with the list's own filters, search and order: every trade they select, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            cl = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:trading_trade_changelist") + "?e=1")
        return csv_response("trades.csv", TRADE_CSV_FIELDS, trade_csv_rows(cl.queryset))

    @staticmethod
    def totals(cl) -> dict:
        """From the daily summary kept with each trade booked (a row per strategy and session, not every trade)
        when nothing but strategy, mode and session dates is asked for; otherwise from the trades selected."""
        asked = {k: v for k, v in cl.params.items() if k != ORDER_VAR}
        if not cl.query and set(asked) <= set(SUMMARY_FILTERS):
            try:
                return DailyRiskState.objects.filter(**{SUMMARY_FILTERS[k]: v for k, v in asked.items()}).aggregate(
                    n=Coalesce(Sum("trades"), 0), total=Sum("realized_pnl"), wins=Coalesce(Sum("wins"), 0))
            except (ValidationError, ValueError):
                pass  # a parameter the summary cannot read: the trades' own answer
        return cl.queryset.order_by().aggregate(n=Count("id"), total=Sum("pnl"), wins=Count("id", filter=Q(pnl__gt=0)))

    def cells(self, obj) -> list[tuple[str, str]]:
        """A row's cells (css class, HTML), as list_display names them."""
        tick = getattr(obj, "tick", None)
        return [("field-exit_at", f"{obj.exit_time:%Y-%m-%d %H:%M}"), ("field-strategy nowrap", escape(obj.strategy)),
                ("field-contract_of", escape(obj.contract or obj.symbol)),
                ("field-session_date nowrap", plain(obj.session_date)),
                ("field-entry_at", f"{obj.entry_time:%Y-%m-%d %H:%M}"),
                ("field-entry", at_tick(obj.entry_price, tick)), ("field-exit", at_tick(obj.exit_price, tick)),
                ("field-entry_size", plain(obj.entry_size)), ("field-pnl_shown", signed_money(obj.pnl)),
                ("field-pnl_percent_shown", self.pnl_percent_shown(obj)), ("field-exit_reason", escape(obj.exit_reason))]

    @admin.display(description="exit (UTC)", ordering="exit_time")
    def exit_at(self, obj):
        return f"{obj.exit_time:%Y-%m-%d %H:%M}"

    @admin.display(description="entry (UTC)", ordering="entry_time")
    def entry_at(self, obj):
        return f"{obj.entry_time:%Y-%m-%d %H:%M}"

    @admin.display(description="contract", ordering="contract")
    def contract_of(self, obj):
        return obj.contract or obj.symbol

    @admin.display(description="entry price", ordering="entry_price")
    def entry(self, obj):
        return at_tick(obj.entry_price, getattr(obj, "tick", None))

    @admin.display(description="exit price", ordering="exit_price")
    def exit(self, obj):
        return at_tick(obj.exit_price, getattr(obj, "tick", None))

    @admin.display(description="P&L $", ordering="pnl")
    def pnl_shown(self, obj):
        return signed_money(obj.pnl)

    @admin.display(description="P&L %", ordering="pnl_percent")
    def pnl_percent_shown(self, obj):
        return "—" if obj.pnl_percent is None else f"{obj.pnl_percent:+.2f} %"

    @admin.display(description="entry order")
    def entry_order(self, obj):
        return _signal_link(obj.entry_signal)

    @admin.display(description="exit order")
    def exit_order(self, obj):
        return _signal_link(obj.exit_signal) if obj.exit_signal_id else "— (the broker's own stop or target)"


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("strategy", "instrument", "contract", "state", "size", "entry_time", "entry_price",
                    "stop_price", "target_price", "bars_held", "ml_score")
    list_filter = (("strategy__mode", admin.ChoicesFieldListFilter), "state", "strategy", "instrument")
    list_select_related = ("strategy", "instrument")


def _signal_link(sig):
    return format_html('<a href="{}">{}</a>', reverse("admin:trading_signal_change", args=[sig.pk]), sig.key)

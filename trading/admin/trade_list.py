"""The trade list's machinery, built to read as fast with a million trades as with a thousand: filters whose
choices come from small tables or fixed lists (never a DISTINCT over the trades), a paginator that counts
only as far as its page links reach (never the whole table), rows written straight to HTML, and the CSV
export of exactly what the filters and the search selected.

Nothing here may change what a filter selects or what a row shows; only how much it costs to find out.
"""
from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import result_headers
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.views.main import PAGE_VAR
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import formats
from django.utils.functional import cached_property
from django.utils.html import escape
from django.utils.safestring import mark_safe

from trading.models import Instrument

# Every exit reason the books write (strategies/ibs.py, strategies/rolls.py, trading/execution/exits.py).
EXIT_REASONS = (("ibs_exit", "IBS exit"), ("stop_loss", "stop loss"), ("take_profit", "take profit"),
                ("max_bars", "max bars held"), ("flat_time", "flat time"), ("early_close", "early close"),
                ("roll", "roll"), ("flatten", "flatten (killswitch)"))
PAGE_LINKS_AHEAD = 10  # pages past the current one the paginator looks for, and links to


class SymbolFilter(admin.SimpleListFilter):
    """By instrument root; the choices are the instruments, not the distinct symbols of every trade."""
    title = "symbol"
    parameter_name = "symbol"

    def lookups(self, request, model_admin):
        return [(root, root) for root in Instrument.objects.order_by("root").values_list("root", flat=True)]

    def queryset(self, request, queryset):
        return queryset.filter(symbol=self.value()) if self.value() else queryset


class ExitReasonFilter(admin.SimpleListFilter):
    """By exit reason, from the fixed list of reasons the books write."""
    title = "exit reason"
    parameter_name = "exit_reason"

    def lookups(self, request, model_admin):
        return EXIT_REASONS

    def queryset(self, request, queryset):
        return queryset.filter(exit_reason=self.value()) if self.value() else queryset


class ReachPaginator(Paginator):
    """Counts the rows only as far as PAGE_LINKS_AHEAD pages past the page asked for (one more row tells
    that more follow), then loads the page by sorting its keys only.

    A COUNT(*) of a million trades costs more than the rest of the page (PostgreSQL: ~60 ms); the page
    links need no more than "these pages exist". `count` is exact when the selection ends within reach,
    else a lower bound (`more` is then True). Keys first: sorting the keys and loading that page's rows
    by primary key is many times cheaper than sorting whole rows with their joins, whatever the index.
    """

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, page_asked: int = 1):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.reach = (max(page_asked, 1) + PAGE_LINKS_AHEAD) * per_page

    @cached_property
    def count(self):
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        return self.object_list.order_by().values("pk")[:self.reach + 1].count()

    @property
    def more(self) -> bool:
        return self.count > self.reach

    def page(self, number):
        page = super().page(number)
        if isinstance(page.object_list, QuerySet):
            keys = list(page.object_list.values_list("pk", flat=True))
            page.object_list = self.object_list.filter(pk__in=keys)
        return page


def page_asked(request) -> int:
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except ValueError:
        return 1


def result_table(cl, cells) -> dict:
    """The context of admin/change_list_results.html for the page's trades: Django's own sortable headers,
    and each row's cells from `cells(trade)` (a list of (css class, safe HTML)), the first one a link to the
    trade's page, the list's filters preserved in it as Django's rows do."""
    headers = list(result_headers(cl))
    prefix = reverse("admin:trading_trade_changelist")
    suffix = add_preserved_filters({"preserved_filters": cl.preserved_filters, "opts": cl.opts},
                                   f"{prefix}0/change/")[len(f"{prefix}0/change/"):]
    rows = []
    for trade in cl.result_list:
        (first_class, first), *rest = cells(trade)
        html = [f'<th class="{first_class}"><a href="{prefix}{trade.pk}/change/{escape(suffix)}">{first}</a></th>']
        html += [f'<td class="{css}">{value}</td>' for css, value in rest]
        rows.append([mark_safe("".join(html))])
    return {"cl": cl, "result_hidden_fields": [], "result_headers": headers,
            "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]), "results": rows}


def plain(value) -> str:
    """A value as Django's list shows a plain field: dates and numbers localized, text escaped."""
    return escape(formats.localize(value))

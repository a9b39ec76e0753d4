from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from trading.modelcard import model_card
from trading.models import Contract, ContractRoll, Instrument, StoredBar, StrategyInstrument

from .base import FINITE_DECIMALS, ReadOnlyAdmin
from .versions import VersionedAdmin


class ContractRollInline(admin.TabularInline):
    model = ContractRoll
    extra = 0
    can_delete = False
    fields = ("rolled_at", "session_date", "from_contract", "to_contract", "reason")
    readonly_fields = fields
    max_num = 0
    ordering = ("-rolled_at",)


class ContractInline(admin.TabularInline):
    """The root's listed contracts, from Databento's definitions (written by the hub and warmup)."""

    model = Contract
    extra = 0
    can_delete = False
    max_num = 0
    fields = ("raw_symbol", "front", "expiration", "roll_date", "activation", "databento_id", "last_session",
              "last_session_volume")
    readonly_fields = fields
    ordering = ("expiration", "raw_symbol")
    verbose_name_plural = "Listed contracts (from Databento's instrument definitions)"

    def get_queryset(self, request):
        """Contracts still trading at the market's time (the root's latest stored bar, else now)."""
        rows = super().get_queryset(request).select_related("instrument")
        newest = StoredBar.objects.aggregate(last=Max("ts"))["last"]
        return rows.exclude(expiration__lt=newest) if newest else rows

    @admin.display(boolean=True, description="front")
    def front(self, obj):
        return obj.raw_symbol == obj.instrument.active_contract

    @admin.display(description="calendar roll (first session of the next)")
    def roll_date(self, obj):
        return obj.roll_date()


@admin.register(Instrument)
class InstrumentAdmin(VersionedAdmin):
    formfield_overrides = FINITE_DECIMALS
    list_display = ("root", "name", "exchange", "point_value", "tick_size", "tick_value", "active_contract",
                    "front_expires", "next_roll", "roll_rule", "ml_model")
    list_filter = ("exchange", "roll_rule", "currency")
    search_fields = ("root", "name", "active_contract")
    fieldsets = (
        (None, {"fields": ("root", "name", "exchange", "dataset", "currency")}),
        ("Contract specification", {"fields": ("point_value", "tick_size", "tick_value")}),
        ("Front contract and roll", {"fields": ("active_contract", "roll_rule", "roll_days_before_expiry",
                                                "front_expires", "next_roll")}),
        ("ML filter", {"fields": ("ml_model",)}),
    )
    readonly_fields = ("front_expires", "next_roll", "ml_model")
    inlines = [ContractInline, ContractRollInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("contracts")

    def _front(self, obj) -> Contract | None:
        if obj is None or obj.pk is None:
            return None
        return next((c for c in obj.contracts.all() if c.raw_symbol == obj.active_contract), None)

    @admin.display(description="front expires")
    def front_expires(self, obj):
        front = self._front(obj)
        return front.expiration if front and front.expiration else "—"

    @admin.display(description="next roll")
    def next_roll(self, obj):
        """Calendar rule: the first session of the next contract. Volume rule: when another outright
        trades more, by the front's expiration at the latest."""
        front = self._front(obj)
        if front is None or front.expiration is None:
            return "—"
        if obj.roll_rule == Instrument.RollRule.CALENDAR:
            return f"{front.roll_date():%Y-%m-%d}"
        return f"by volume, before {front.expiration:%Y-%m-%d}"

    @admin.display(description="ML model")
    def ml_model(self, obj):
        """A link to the model page, marked when the model was trained on generated data or has a warning."""
        if obj is None or obj.pk is None:
            return "—"
        card = model_card(obj.root)
        if card.meta is None:
            return format_html('<a href="{}">no model</a>', reverse("admin:trading_instrument_model", args=[obj.pk]))
        warnings = card.warnings(timezone.now())
        return format_html('<a class="model-link" href="{}">Model</a>{}{}',
                           reverse("admin:trading_instrument_model", args=[obj.pk]),
                           format_html(' <span class="generated-mark" title="{}">GENERATED DATA</span>', card.source)
                           if card.generated else "",
                           format_html(' <span class="model-warning" title="{}">⚠ {}</span>',
                                       "; ".join(t for _, t in warnings), len(warnings)) if warnings else "")

    def get_urls(self):
        view = self.admin_site.admin_view(self.model_view)
        return [path("<path:object_id>/model/", view, name="trading_instrument_model"), *super().get_urls()]

    def model_view(self, request, object_id):
        """The instrument's ML model: age, data source, walk-forward folds, with/without, warnings."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"no instrument {object_id!r}")
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        now = timezone.now()
        card = model_card(obj.root)
        legs = StrategyInstrument.objects.filter(instrument=obj).select_related("strategy").order_by("strategy__name")
        context = {
            **self.admin_site.each_context(request), "title": f"ML model of {obj.root}", "opts": self.opts,
            "original": obj, "card": card, "meta": card.meta or {}, "age": card.age_days(now),
            "max_age": settings.MODEL_MAX_AGE_DAYS, "warnings": [text for _, text in card.warnings(now)],
            "folds": [fold_row(f) for f in card.folds], "comparison": comparison_rows(card.comparison),
            "legs": [{"strategy": str(leg.strategy), "enabled": leg.enabled, "ml_enabled": leg.ml_enabled,
                      "threshold": leg.params().ml_threshold} for leg in legs],
        }
        return TemplateResponse(request, "admin/trading/instrument/model.html", context)


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def _money(value) -> str:
    return "—" if value is None else f"{value:,.2f}"


def fold_row(fold: dict) -> dict:
    test, inside = fold.get("test") or {}, fold.get("in_sample") or {}
    w, wo = fold.get("with_filter") or {}, fold.get("without_filter") or {}
    window = fold.get("test_window") or {}
    return {"fold": fold.get("fold"), "window": f"{str(window.get('start', ''))[:10]} → {str(window.get('end', ''))[:10]}",
            "trained_to": str((fold.get("train_window") or {}).get("label_end", "—"))[:16].replace("T", " "),
            "train": fold.get("train_signals"), "skipped": fold.get("skipped", ""),
            "threshold": "—" if fold.get("threshold") is None else f"{fold['threshold']:.2f}",
            "taken": f"{test.get('taken', '—')}/{test.get('signals', '—')}", "win_rate": _pct(test.get("win_rate")),
            "base_win_rate": _pct(test.get("base_win_rate")), "in_sample_win_rate": _pct(inside.get("win_rate")),
            "with_pnl": _money(w.get("total_pnl")), "without_pnl": _money(wo.get("total_pnl")),
            "with_trades": w.get("trades", "—"), "without_trades": wo.get("trades", "—")}


def comparison_rows(cmp: dict | None) -> list[tuple]:
    if not cmp:
        return []
    w, wo = cmp["with_filter"], cmp["without_filter"]
    return [("trades", w["trades"], wo["trades"]), ("win rate", _pct(w["win_rate"]), _pct(wo["win_rate"])),
            ("P&L $", _money(w["total_pnl"]), _money(wo["total_pnl"])),
            ("max drawdown $", _money(w["max_drawdown"]), _money(wo["max_drawdown"]))]


@admin.register(Contract)
class ContractAdmin(ReadOnlyAdmin):
    list_display = ("raw_symbol", "instrument", "expiration", "activation", "databento_id", "last_session",
                    "last_session_volume", "updated_at")
    list_filter = ("instrument",)
    search_fields = ("raw_symbol",)
    list_select_related = ("instrument",)
    ordering = ("instrument", "expiration")


@admin.register(ContractRoll)
class ContractRollAdmin(ReadOnlyAdmin):
    list_display = ("rolled_at", "instrument", "from_contract", "to_contract", "session_date", "reason")
    list_filter = ("instrument",)
    date_hierarchy = "rolled_at"
    list_select_related = ("instrument",)

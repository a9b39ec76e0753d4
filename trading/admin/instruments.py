from django.contrib import admin
from django.db.models import Max

from trading.models import Contract, ContractRoll, Instrument, StoredBar

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
                    "front_expires", "next_roll", "roll_rule")
    list_filter = ("exchange", "roll_rule", "currency")
    search_fields = ("root", "name", "active_contract")
    fieldsets = (
        (None, {"fields": ("root", "name", "exchange", "dataset", "currency")}),
        ("Contract specification", {"fields": ("point_value", "tick_size", "tick_value")}),
        ("Front contract and roll", {"fields": ("active_contract", "roll_rule", "roll_days_before_expiry",
                                                "front_expires", "next_roll")}),
    )
    readonly_fields = ("front_expires", "next_roll")
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

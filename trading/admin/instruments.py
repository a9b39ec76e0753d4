from django.contrib import admin

from trading.models import ContractRoll, Instrument

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


@admin.register(Instrument)
class InstrumentAdmin(VersionedAdmin):
    formfield_overrides = FINITE_DECIMALS
    list_display = ("root", "name", "exchange", "point_value", "tick_size", "tick_value", "active_contract",
                    "roll_rule")
    list_filter = ("exchange", "roll_rule", "currency")
    search_fields = ("root", "name", "active_contract")
    fieldsets = (
        (None, {"fields": ("root", "name", "exchange", "dataset", "currency")}),
        ("Contract specification", {"fields": ("point_value", "tick_size", "tick_value")}),
        ("Front contract and roll", {"fields": ("active_contract", "roll_rule", "roll_days_before_expiry")}),
    )
    inlines = [ContractRollInline]


@admin.register(ContractRoll)
class ContractRollAdmin(ReadOnlyAdmin):
    list_display = ("rolled_at", "instrument", "from_contract", "to_contract", "session_date", "reason")
    list_filter = ("instrument",)
    date_hierarchy = "rolled_at"
    list_select_related = ("instrument",)

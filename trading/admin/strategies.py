from django.contrib import admin

from trading.config import describe
from trading.models import Strategy, StrategyInstrument

from .base import FINITE_DECIMALS
from .versions import SEEN, VersionedAdmin, VersionedForm


class StrategyInstrumentInline(admin.TabularInline):
    formfield_overrides = FINITE_DECIMALS
    form = VersionedForm
    model = StrategyInstrument
    extra = 0
    fields = ("instrument", "enabled", "size", "commission_per_side", "ticker", "ml_enabled", "ml_threshold",
              "ml_failure_policy", "overrides", SEEN)
    autocomplete_fields = ("instrument",)


@admin.register(Strategy)
class StrategyAdmin(VersionedAdmin):
    formfield_overrides = FINITE_DECIMALS
    list_display = ("name", "enabled", "instrument_list", "max_positions", "daily_stop_loss", "time_in_force",
                    "broker_status")
    list_filter = ("enabled",)
    search_fields = ("name", "description")
    readonly_fields = ("broker_status", "discord_status", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "description")}),
        ("Broker and alerts (secrets stay in .env; shown masked)", {"fields": (
            "broker_webhook", "broker_status", "discord_webhook", "discord_status", "time_in_force")}),
        ("Risk", {"fields": ("max_positions", "daily_stop_loss")}),
        ("IBS parameters", {"fields": (
            "timeframe", ("ibs_entry_low", "ibs_entry_high"), ("ibs_exit_low", "ibs_exit_high"),
            ("stop_loss_pct", "take_profit_pct"), "max_bars_held", "entry_windows", "flat_time", "window_tz",
            "ml_threshold")}),
        ("Heartbeat", {"fields": ("heartbeat_file", "heartbeat_interval", "updated_at")}),
    )
    inlines = [StrategyInstrumentInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("legs__instrument")

    @admin.display(description="instruments")
    def instrument_list(self, obj):
        return " ".join(leg.instrument.root for leg in obj.legs.all() if leg.enabled)

    @admin.display(description="broker webhook")
    def broker_status(self, obj):
        return describe(obj.broker_webhook, "broker_webhook") if obj.pk else "—"

    @admin.display(description="discord webhook")
    def discord_status(self, obj):
        return describe(obj.discord_webhook, "discord_webhook") if obj.pk and obj.discord_webhook else "—"


@admin.register(StrategyInstrument)
class StrategyInstrumentAdmin(VersionedAdmin):
    formfield_overrides = FINITE_DECIMALS
    list_display = ("strategy", "instrument", "enabled", "size", "commission_per_side", "ml_enabled",
                    "ml_threshold", "ml_failure_policy")
    list_filter = ("strategy", "enabled", "ml_enabled")
    search_fields = ("instrument__root", "strategy__name")
    list_select_related = ("strategy", "instrument")

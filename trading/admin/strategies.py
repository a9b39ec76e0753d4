from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from trading.config import describe
from trading.models import Position, Strategy, StrategyInstrument

from .base import FINITE_DECIMALS
from .versions import SEEN, VersionedAdmin, VersionedForm


def held(strategy, instrument=None) -> list[Position]:
    rows = Position.objects.managed().filter(strategy=strategy).select_related("instrument")
    return list(rows.filter(instrument=instrument) if instrument is not None else rows)


class LegFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        for form in self.deleted_forms:
            if form.instance.pk and held(form.instance.strategy, form.instance.instrument_id):
                raise ValidationError(f"{form.instance.instrument.root} holds an open position: it cannot be removed "
                                      "until the position is closed (disable it instead: its exit stays managed, "
                                      "no new entry), or flatten it first.")


def warn_disabled_with_positions(request, strategy) -> None:
    """Say what disabling with positions open does: the positions stay managed, no new entry."""
    positions = held(strategy)
    if not strategy.enabled and positions:
        messages.warning(request, f"{strategy.name} is disabled but holds {len(positions)} open position(s) "
                                  f"({', '.join(p.instrument.root for p in positions)}): its worker keeps managing "
                                  "their exits, takes no new entry, and stops once they are closed. Flatten to "
                                  "close them now.")
        return
    off = [p.instrument.root for p in positions if not strategy.legs.filter(instrument=p.instrument,
                                                                           enabled=True).exists()]
    if off:
        messages.warning(request, f"{', '.join(off)} disabled with a position open: its exit is still managed by "
                                  f"{strategy.name}'s worker, no new entry.")


class OverridesField(forms.JSONField):
    """Parameter overrides on one line: none shows as an empty box (placeholder "none"), and an empty box
    means none ({}), never JSON null."""

    def prepare_value(self, value):
        return "" if value in ({}, None, "{}") else super().prepare_value(value)

    def to_python(self, value):
        return {} if value in self.empty_values else super().to_python(value)

    def bound_data(self, data, initial):
        return {} if data in self.empty_values else super().bound_data(data, initial)


def narrow(em: float, widget=forms.TextInput, **attrs):
    return widget(attrs={"style": f"width: {em}em", **attrs})


class LegForm(VersionedForm):
    overrides = OverridesField(required=False, widget=narrow(11, placeholder="none"),
                               help_text=StrategyInstrument._meta.get_field("overrides").help_text)

    class Meta:
        widgets = {"size": narrow(3.5, forms.NumberInput), "commission_per_side": narrow(4.5, forms.NumberInput),
                   "ml_threshold": narrow(4, forms.NumberInput), "ticker": narrow(8, placeholder="{contract}"),
                   "ml_failure_policy": narrow(11, forms.Select), "roll_policy": narrow(11, forms.Select),
                   "instrument": narrow(9, forms.Select)}


class StrategyInstrumentInline(admin.TabularInline):
    """A row per instrument, narrow enough for 1280 px: the long help texts and choice labels are on each
    column's heading and in its menu; overrides as one line of JSON."""
    formfield_overrides = FINITE_DECIMALS
    form = LegForm
    formset = LegFormSet
    model = StrategyInstrument
    extra = 0
    fields = ("instrument", "enabled", "size", "commission_per_side", "ticker", "ml_enabled", "ml_threshold",
              "ml_failure_policy", "roll_policy", "overrides", SEEN)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "instrument" and isinstance(field.widget, RelatedFieldWidgetWrapper):
            field.widget = field.widget.widget  # a plain menu: instruments are added and edited on their own page
        return field


@admin.register(Strategy)
class StrategyAdmin(VersionedAdmin):
    formfield_overrides = FINITE_DECIMALS
    list_display = ("name", "mode", "enabled", "instrument_list", "max_positions", "daily_stop_loss", "time_in_force",
                    "broker")
    list_filter = ("enabled", "mode")
    search_fields = ("name", "description")
    readonly_fields = ("broker_status", "discord_status", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "mode", "enabled", "description")}),
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

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The instruments table needs the page's whole width at 1280 px: no navigation sidebar on this form.
        return super().changeform_view(request, object_id, form_url,
                                       {**(extra_context or {}), "is_nav_sidebar_enabled": False})

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        warn_disabled_with_positions(request, form.instance)

    @admin.display(description="instruments")
    def instrument_list(self, obj):
        return " ".join(leg.instrument.root for leg in obj.legs.all() if leg.enabled)

    @admin.display(description="broker webhook")
    def broker(self, obj):
        return self.broker_status(obj)

    @admin.display(description="resolves to")
    def broker_status(self, obj):
        return describe(obj.broker_webhook, "broker_webhook") if obj.pk else "—"

    @admin.display(description="resolves to")
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

    def has_delete_permission(self, request, obj=None):
        if obj is not None and held(obj.strategy, obj.instrument_id):
            return False  # a leg holding a position is never removed under it
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        warn_disabled_with_positions(request, obj.strategy)

from django.contrib import admin

from trading.models import PaperOrder, Signal

from .base import DeliveryAttemptInline, ReadOnlyAdmin


class OrderAttemptInline(DeliveryAttemptInline):
    fk_name = "signal"


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = ("key", "state", "action", "quantity", "signal_price", "reason", "attempts", "last_status",
                    "created_at", "sent_at")
    list_filter = (("strategy__mode", admin.ChoicesFieldListFilter), "state", "action", "strategy", "reason")
    search_fields = ("key", "contract")
    date_hierarchy = "bar_time"
    list_select_related = ("strategy", "instrument")
    inlines = [OrderAttemptInline]
    show_full_result_count = False


@admin.register(PaperOrder)
class PaperOrderAdmin(ReadOnlyAdmin):
    """What the built-in paper broker took from paper strategies, with each order's fill in the books."""
    list_display = ("received_at", "strategy", "key", "action", "ticker", "fill_time", "fill_price")
    list_filter = ("signal__strategy", "signal__action")
    search_fields = ("signal__key",)
    list_select_related = ("signal__strategy",)

    @admin.display(description="strategy")
    def strategy(self, obj):
        return obj.signal.strategy

    @admin.display(description="order")
    def key(self, obj):
        return obj.signal.key

    @admin.display(description="action")
    def action(self, obj):
        return obj.signal.action

    @admin.display(description="ticker")
    def ticker(self, obj):
        return obj.payload.get("ticker", "")

    @admin.display(description="filled at")
    def fill_time(self, obj):
        fill = obj.fill()
        return fill[0] if fill else "—"

    @admin.display(description="fill price")
    def fill_price(self, obj):
        fill = obj.fill()
        return fill[1] if fill else "—"

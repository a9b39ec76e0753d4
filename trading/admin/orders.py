from django.contrib import admin

from trading.models import Signal

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

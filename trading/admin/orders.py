from django.contrib import admin

from trading.models import DeliveryAttempt, Signal

from .base import ReadOnlyAdmin


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fk_name = "signal"
    extra = 0
    can_delete = False
    max_num = 0
    fields = ("number", "attempted_at", "outcome", "status_code", "duration_ms", "response")
    readonly_fields = fields


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = ("key", "state", "action", "quantity", "signal_price", "reason", "attempts", "last_status",
                    "created_at", "sent_at")
    list_filter = ("state", "action", "strategy", "reason")
    search_fields = ("key", "contract")
    date_hierarchy = "bar_time"
    list_select_related = ("strategy", "instrument")
    inlines = [DeliveryAttemptInline]
    show_full_result_count = False

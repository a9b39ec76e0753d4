from django.contrib import admin

from trading.models import ConfigRevision, Heartbeat, Notification

from .base import DeliveryAttemptInline, ReadOnlyAdmin


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("process", "state", "last_seen", "last_bar_time", "open_positions", "pid", "host",
                    "stale_alerted")
    list_filter = ("state", "stale_alerted")


class AlertAttemptInline(DeliveryAttemptInline):
    fk_name = "notification"


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    inlines = [AlertAttemptInline]
    list_display = ("created_at", "kind", "strategy", "title", "state", "attempts", "sent_at")
    list_filter = ("kind", "state", "strategy")
    search_fields = ("title", "body")
    list_select_related = ("strategy",)
    show_full_result_count = False


@admin.register(ConfigRevision)
class ConfigRevisionAdmin(ReadOnlyAdmin):
    list_display = ("at", "model", "object_repr", "version", "user", "fields")
    list_filter = ("model", "user")
    search_fields = ("object_repr", "user")

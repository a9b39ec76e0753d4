import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse

from trading.models import DailyRiskState, KillSwitch, KillSwitchEvent
from trading.risk.killswitch import current_mode, env_override, set_mode

from .base import ReadOnlyAdmin

log = logging.getLogger(__name__)


class KillSwitchForm(forms.ModelForm):
    reason = forms.CharField(max_length=300, required=True, widget=forms.TextInput(attrs={"size": 80}),
                             help_text="Required: why the mode changes (recorded with your name and the time)")

    class Meta:
        model = KillSwitch
        fields = ("mode", "reason")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["reason"] = ""

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason for changing the killswitch.")
        return reason


@admin.register(KillSwitch)
class KillSwitchAdmin(admin.ModelAdmin):
    form = KillSwitchForm
    readonly_fields = ("effective_mode", "current_reason", "changed_by", "changed_at")
    fields = ("effective_mode", "current_reason", "changed_by", "changed_at", "mode", "reason")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and not self.has_change_permission(request):
            log.warning("killswitch change refused user=%s mode=%r: needs trading.change_killswitch",
                        request.user.get_username(), request.POST.get("mode", "")[:16])
        if object_id == "1" and self.has_view_or_change_permission(request):
            KillSwitch.objects.get_or_create(pk=1)  # its page always opens, even on a database that lost the row
        return super().changeform_view(request, object_id, form_url, extra_context)  # 403 without the permission

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        KillSwitch.objects.get_or_create(pk=1)
        return HttpResponseRedirect(reverse("admin:trading_killswitch_change", args=[1]))

    @admin.display(description="effective mode now")
    def effective_mode(self, obj):
        forced = env_override()
        mode = KillSwitch.Mode(current_mode()).label
        return f"{mode} (forced by POLICY_KILLSWITCH)" if forced else mode

    @admin.display(description="reason of the current mode")
    def current_reason(self, obj):
        return obj.reason or "—"

    def save_model(self, request, obj, form, change):
        event = set_mode(form.cleaned_data["mode"], form.cleaned_data["reason"], actor=request.user.get_username(),
                         user=request.user)
        obj.refresh_from_db()
        messages.warning(request, f"Killswitch {event.previous_mode} → {event.mode}, recorded for "
                                  f"{event.actor}: {event.reason}")

    def response_change(self, request, obj):
        return HttpResponseRedirect(reverse("admin:trading_killswitch_change", args=[1]))


@admin.register(KillSwitchEvent)
class KillSwitchEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "previous_mode", "mode", "reason")
    list_filter = ("mode", "actor")
    search_fields = ("reason", "actor")


@admin.register(DailyRiskState)
class DailyRiskStateAdmin(ReadOnlyAdmin):
    list_display = ("session_date", "strategy", "realized_pnl", "trades", "stopped", "stopped_at", "stop_reason")
    list_filter = ("stopped", "strategy")
    date_hierarchy = "session_date"
    list_select_related = ("strategy",)
